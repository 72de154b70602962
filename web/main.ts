/**
 * Entry point of the page's bundle (`app.js`): starts the page.
 *
 * @module
 */
import { start } from "./app.ts";

await start();
