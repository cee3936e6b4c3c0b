/** The extension's version, sent in the comm "hello" reply (kept equal to package.json by a unit test). */
export const VERSION = '0.2.0';
