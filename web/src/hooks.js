import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/**
 * Calls ``load`` now and every ``everyMs`` while the page is shown (not while the tab is
 * hidden); ``{data, error, reload}``. A call still in flight is not started again.
 */
export function usePoll(load, everyMs, deps = []) {
  const [state, setState] = useState({ data: null, error: null });
  const busy = useRef(false);
  const alive = useRef(true);
  const reload = useCallback(async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      const data = await load();
      if (alive.current) setState({ data, error: null });
    } catch (error) {
      if (alive.current) setState((s) => ({ data: s.data, error }));
    } finally {
      busy.current = false;
    }
  }, deps);
  useEffect(() => {
    alive.current = true;
    reload();
    const timer = everyMs ? setInterval(() => document.hidden || reload(), everyMs) : null;
    return () => {
      alive.current = false;
      clearInterval(timer);
    };
  }, [reload, everyMs]);
  return { ...state, reload };
}
