import { href, navigate } from '../router.js';

/** An <a> that changes the page without a reload (a modified click opens a new tab). */
export function Link({ to, children, ...rest }) {
  const onClick = (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
      || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={href(to)} onClick={onClick} {...rest}>{children}</a>;
}
