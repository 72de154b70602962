/**
 * Entry point of the page's bundle (`main.js`): starts the page.
 *
 * @module
 */
import { start } from "./app.ts";

await start();
