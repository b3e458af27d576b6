// The console is served under /console/ by the server itself; every file it loads comes
// from that origin (the server's Content-Security-Policy allows nothing else).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsInlineLimit: 0, // no data: URLs for assets: every file is a file the server serves
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
