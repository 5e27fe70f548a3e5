import type { ResponseStore, StoredResponse, StoredTurn } from "../../../shared/openai-responses/store.ts";
import type { Caller } from "../../fleet/access/caller.ts";
import { unwrap, type FleetApi } from "../../fleet/fleet-contract.ts";

/** The gateway's `ResponseStore`: the Fleet's table, seen as the calling key (the Fleet checks the key on each call). */
export class FleetResponseStore implements ResponseStore {
  readonly #fleet: FleetApi;
  readonly #caller: Caller;

  constructor(fleet: FleetApi, caller: Caller) {
    this.#fleet = fleet;
    this.#caller = caller;
  }

  async save(turn: StoredTurn): Promise<void> {
    unwrap(await this.#fleet.saveResponse(this.#caller, turn));
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    return unwrap(await this.#fleet.storedResponse(this.#caller, id)) ?? undefined;
  }

  async assertRoom(bytes: number): Promise<void> {
    unwrap(await this.#fleet.responseRoom(this.#caller, bytes));
  }

  async delete(id: string): Promise<boolean> {
    return unwrap(await this.#fleet.deleteResponse(this.#caller, id));
  }
}
