/** An error (role=alert, read at once) or a status message (role=status). */
export function Notice({ error, message }) {
  if (error) return <p class="notice error" role="alert">{String(error.message || error)}</p>;
  if (message) return <p class="notice ok" role="status">{message}</p>;
  return null;
}
