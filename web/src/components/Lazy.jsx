import { useEffect, useState } from 'preact/hooks';

/** A page whose code (and its libraries: uPlot for the charts) loads on first visit. */
export function lazyPage(load) {
  let loaded = null;
  return function LazyPage(props) {
    const [Page, setPage] = useState(() => loaded);
    const [error, setError] = useState(null);
    useEffect(() => {
      if (!loaded) {
        load().then((mod) => {
          loaded = mod.default;
          setPage(() => loaded);
        }, setError);
      }
    }, []);
    if (error) return <p class="notice error" role="alert">This page could not be loaded: {error.message}</p>;
    return Page ? <Page {...props} /> : <p role="status">Loading…</p>;
  };
}
