import { LabIcon } from '@jupyterlab/ui-components';

const SPARKLE_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M12 2l2.1 6.4L20.5 10.5l-6.4 2.1L12 19l-2.1-6.4L3.5 10.5l6.4-2.1zM19 15l1 3 3 1-3 1-1 3-1-3-3-1 3-1z"/>
</svg>`;

export const generateIcon = new LabIcon({
  name: 'llmscript-magic:generate',
  svgstr: SPARKLE_SVG
});
