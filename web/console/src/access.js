// The Access panel: the restricted-API key (header + value) and bearer token.
import { getAccess, setAccess } from './api.js';

export function initAccess(onChange) {
  const form = document.getElementById('access-form');
  const header = document.getElementById('access-header');
  const value = document.getElementById('access-value');
  const token = document.getElementById('access-token');
  const a = getAccess();
  header.value = a.header || '';
  value.value = a.value || '';
  token.value = a.token || '';
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setAccess({ header: header.value.trim(), value: value.value, token: token.value.trim() });
    document.getElementById('access').open = false;
    onChange();
  });
  document.getElementById('access-clear').addEventListener('click', () => {
    header.value = value.value = token.value = '';
    setAccess({});
    onChange();
  });
}

// Opens the panel, naming the header the server asked for.
export function askForAccess(headerName) {
  const panel = document.getElementById('access');
  panel.open = true;
  const header = document.getElementById('access-header');
  if (headerName && !header.value) header.value = headerName;
  (headerName ? document.getElementById('access-value') : header).focus();
}
