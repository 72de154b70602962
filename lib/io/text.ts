/**
 * Text encodings for the HTML, SVG and notebook output: escaping and base64.
 *
 * @module
 */

/** `text` safe inside HTML or XML text and attribute values (`&`, `<`, `>` and `"` escaped). */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;");
}

/** Base64 of bytes (chunked, so large images do not overflow the argument list). */
export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * A `data:` URI for bytes, for inlining images in HTML or SVG.
 *
 * @param bytes The file's bytes.
 * @param mime Its media type (default `image/png`).
 */
export function dataUri(bytes: Uint8Array, mime = "image/png"): string {
  return `data:${mime};base64,${base64(bytes)}`;
}
