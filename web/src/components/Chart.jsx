// A uPlot line chart of one figure per model over the live feed's history. The canvas
// is redrawn on each sample; a table of the latest values beside it says the same
// thing in text (for screen readers, and for anyone who wants the number).
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

export function color(i) {
  return COLORS[i % COLORS.length];
}

/** 1500 → "1.5k", 0.25 → "0.25": short tick labels, so the axis stays narrow. */
function tick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

function options(width, names, unit) {
  return {
    width,
    height: 200,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    // From zero, and at least up to 1, so an idle chart has a scale rather than 0, 0, 0.
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
    axes: [
      { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' } },
      { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' }, label: unit.trim(),
        labelSize: unit.trim() ? 18 : 0, size: 48, values: (u, ticks) => ticks.map(tick) },
    ],
    series: [{}, ...names.map((name, i) => ({ label: name, stroke: color(i), width: 2, spanGaps: true }))],
  };
}

/** ``data``: ``[t, ...one array per name]``; ``names``: the series, in order. */
export function Chart({ title, data, names, unit = '', id }) {
  const box = useRef(null);
  const plot = useRef(null);
  const key = names.join('\u0000');

  useEffect(() => {
    const el = box.current;
    const width = () => Math.max(240, el.clientWidth);
    plot.current = new uPlot(options(width(), names, unit), data, el);
    const resize = new ResizeObserver(() => plot.current && plot.current.setSize({ width: width(), height: 200 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [key, unit]);

  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  });

  const last = (arr) => {
    for (let i = arr.length - 1; i >= 0; i--) if (arr[i] != null) return arr[i];
    return null;
  };
  return (
    <figure class="chart" id={id} data-points={data[0].length}>
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-canvas" aria-hidden="true" />
      <table class="chart-now">
        <caption class="sr-only">{title}: latest values</caption>
        <tbody>
          {names.map((name, i) => {
            const v = last(data[i + 1]);
            return (
              <tr key={name}>
                <th scope="row"><span class="swatch" style={{ background: color(i) }} />{name}</th>
                <td data-model={name} data-value={v == null ? '' : v}>{v == null ? '–' : `${+v.toFixed(2)}${unit}`}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </figure>
  );
}
