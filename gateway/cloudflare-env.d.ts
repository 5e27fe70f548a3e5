// Types `env` and `exports` of "cloudflare:workers" (the tests read both) as this Worker's. Only
// here, in a declaration file nothing imports: a module of the app importing the app is a circle.
import type { GatewayBindings } from "./env.ts";

declare global {
  namespace Cloudflare {
    interface Env extends GatewayBindings {}
    interface GlobalProps {
      mainModule: typeof import("./worker/index.ts");
      durableNamespaces: "Fleet" | "NodeObject";
    }
  }
}
