/** 75 → "1 min 15 s"; null → "–". */
export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

/** Megabytes as "812 MB" or "7.8 GB". */
export function megabytes(mb) {
  if (mb == null) return '–';
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

export function percent(value) {
  return value == null ? '–' : `${Math.round(value)} %`;
}

export function when(iso) {
  if (!iso) return '–';
  const d = new Date(typeof iso === 'number' ? iso * 1000 : iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}
