// GPUs and the host: memory and utilization, from /api/system/status, /api/system/gpu
// and /api/devices/info.
import { get } from '../api.js';
import { megabytes, percent } from '../format.js';
import { usePoll } from '../hooks.js';
import { Notice } from '../components/Notice.jsx';

async function load() {
  const [status, gpu, devices] = await Promise.all([
    get('/api/system/status'), get('/api/system/gpu'), get('/api/devices/info'),
  ]);
  return { status, gpus: gpu.gpus || [], devices: devices.devices };
}

function Meter({ label, value, max = 100, text }) {
  const pct = value == null || !max ? null : Math.min(100, (value / max) * 100);
  return (
    <div class="meter-row">
      <span class="meter-label">{label}</span>
      <meter min={0} max={max || 1} value={value ?? 0} aria-label={label}
        high={(max || 1) * 0.85} optimum={0}>{text}</meter>
      <span class="meter-text">{pct == null ? '–' : text}</span>
    </div>
  );
}

export function Devices() {
  const { data, error } = usePoll(load, 3000);
  if (!data) return (<><h1 tabIndex={-1}>Devices</h1><Notice error={error} />{!error && <p role="status">Loading…</p>}</>);
  const r = data.status.resources;
  const cpu = data.devices.cpu.info;
  return (
    <>
      <h1 tabIndex={-1}>Devices</h1>
      <Notice error={error} />
      <div class="cards">
        <section class="card" aria-labelledby="host-h">
          <h2 id="host-h">Host</h2>
          <Meter label="CPU" value={r.cpu_percent} text={percent(r.cpu_percent)} />
          <Meter label="Memory" value={r.memory_used} max={r.memory_total}
            text={`${megabytes(r.memory_used)} of ${megabytes(r.memory_total)} (${percent(r.memory_percent)})`} />
          {r.disk_total != null && (
            <Meter label="Disk" value={r.disk_used} max={r.disk_total}
              text={`${megabytes(r.disk_used)} of ${megabytes(r.disk_total)} (${percent(r.disk_percent)})`} />
          )}
          <dl class="facts">
            <dt>CPU cores</dt><dd>{cpu.cpu_count ?? r.cpu_count ?? '–'}</dd>
            {r.load_average && <><dt>Load</dt><dd>{r.load_average.map((v) => v.toFixed(2)).join(' / ')}</dd></>}
            <dt>Gateway memory</dt><dd>{megabytes(r.process_rss)}</dd>
            <dt>Models running</dt><dd>{data.status.models.running} of {data.status.models.total}</dd>
          </dl>
        </section>
        {data.gpus.length === 0 && (
          <section class="card">
            <h2>GPUs</h2>
            <p>No GPU found (no NVIDIA driver, or none on this host).</p>
          </section>
        )}
        {data.gpus.map((g) => (
          <section class="card gpu" key={g.id} aria-labelledby={`gpu-${g.id}`}>
            <h2 id={`gpu-${g.id}`}>GPU {g.id}: {g.name || 'unknown'}</h2>
            <Meter label="Utilization" value={g.utilization} text={percent(g.utilization)} />
            <Meter label="Memory" value={g.memory_used} max={g.memory_total}
              text={`${megabytes(g.memory_used)} of ${megabytes(g.memory_total)}`} />
            <dl class="facts">
              <dt>Temperature</dt><dd>{g.temperature == null ? '–' : `${g.temperature} °C`}</dd>
              <dt>Power</dt><dd>{g.power_usage == null ? '–' : `${Math.round(g.power_usage)} W of ${Math.round(g.power_limit || 0)} W`}</dd>
              <dt>Processes</dt><dd>{(g.processes || []).length}</dd>
            </dl>
          </section>
        ))}
      </div>
    </>
  );
}
