// Live charts per model from /ws/monitor's request_metrics: TTFT, latency, throughput,
// queue depth. The history is kept by live.js, so it survives moving between pages.
import { feed, history } from '../live.js';
import { useStore } from '../store.js';
import { Chart } from '../components/Chart.jsx';

const CHARTS = [
  { id: 'chart-ttft', title: 'Time to first token, p95', figure: 'ttft_p95', scale: 1000, unit: ' ms' },
  { id: 'chart-latency', title: 'Latency (end to end), p95', figure: 'latency_p95', scale: 1000, unit: ' ms' },
  { id: 'chart-throughput', title: 'Throughput', figure: 'requests_per_second', scale: 1, unit: ' req/s' },
  { id: 'chart-queue', title: 'Queue depth (waiting requests)', figure: 'waiting', scale: 1, unit: '' },
  { id: 'chart-running', title: 'Requests in flight', figure: 'running', scale: 1, unit: '' },
];

function dataOf(names, figure, scale) {
  return [
    history.t.slice(),
    ...names.map((n) => history.models[n][figure].map((v) => (v == null ? null : v * scale))),
  ];
}

export default function Live() {
  const live = useStore(feed);
  const names = Object.keys(history.models).sort();
  return (
    <>
      <div class="page-head">
        <h1 tabIndex={-1}>Live</h1>
        <span class="muted" role="status">
          {live.connected ? `${history.t.length} samples, one a second` : 'connecting to the live feed…'}
        </span>
      </div>
      {names.length === 0 ? <p>No figures yet: they arrive once a second.</p> : (
        <div class="charts">
          {CHARTS.map((c) => (
            <Chart key={c.id} id={c.id} title={c.title} unit={c.unit} names={names}
              data={dataOf(names, c.figure, c.scale)} />
          ))}
        </div>
      )}
    </>
  );
}
