import 'uplot/dist/uPlot.min.css';
import './style.css';
import { initAccess } from './access.js';
import { renderOverview } from './overview.js';
import { renderModel } from './model.js';

const app = document.getElementById('app');
const m = /^\/console\/models\/([^/]+)\/?$/.exec(location.pathname);
let page;
if (m) {
  page = renderModel(app, decodeURIComponent(m[1]));
} else {
  page = renderOverview(app);
}
initAccess(() => page.refresh());
