// Placeholder: replaced by the page's real module.
import { h, replace } from "../dom.js";

export default async function render(main) {
  replace(main, h("h1", {}, "pending"), h("p", {}, "Not built yet."));
}
