// Enroll: three ways, one screen each, as tabs that are links (#/enroll/csr, genkey, upload).
import { h, replace } from "../dom.js";

const WAYS = [
  ["csr", "Upload a request", "./enroll_csr.js"],
  ["genkey", "Generate on the server", "./enroll_genkey.js"],
  ["upload", "Upload a certificate", "./enroll_upload.js"],
];

export default async function render(main, ctx) {
  const chosen = WAYS.find(([name]) => name === ctx.params[0]) || WAYS[0];
  const tabs = h("nav", { class: "tabs", "aria-label": "How to enroll" },
    WAYS.map(([name, title]) => h("a", {
      href: `#/enroll/${name}`, "aria-current": name === chosen[0] ? "page" : null,
    }, title)));
  const screen = h("div", { class: "enroll-screen" });
  replace(main, h("h1", {}, `Enroll: ${chosen[1].toLowerCase()}`), tabs, screen);
  const way = await import(chosen[2]);
  return way.default(screen, ctx);
}
