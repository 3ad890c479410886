/**
 * ModelSwitch: the credit model the stack is in, as one resource, so that `pulumi preview` shows a switch between
 * models as ONE change with its steps (`~ model: "multi" => "unified"`, and the ordered `steps`), not only as
 * resources that appear or disappear. It touches no database: the steps it lists are carried out by the resources
 * named in them, in the order the engine guarantees (docs/architecture.md, "The model switch").
 *
 *   create  records the model and its steps
 *   diff    an update exactly when the model (or the steps, i.e. the program) changed; never a replacement
 *   update  records the new model and steps
 *   read    keeps what was recorded
 *   delete  nothing to remove
 */
import * as pulumi from "@pulumi/pulumi";
import type { CreditModel } from "../lib/config";

export interface ModelSwitchInputs {
  /** The model this update puts the stack in. */
  model: CreditModel;
  /** What switching to `model` does, in order, each step naming the resource that does it. */
  steps: string[];
}

export const modelSwitchProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: ModelSwitchInputs, news: ModelSwitchInputs) {
    const changed = (["model", "steps"] as const).filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
    return {
      changes: changed.length > 0,
      replaces: [],
      detailedDiff: Object.fromEntries(changed.map((k) => [k, { kind: "update", inputDiff: true }])),
    } as pulumi.dynamic.DiffResult;
  },
  async create(inputs: ModelSwitchInputs) {
    return { id: "model-switch", outs: inputs };
  },
  async update(_id: string, _olds: ModelSwitchInputs, news: ModelSwitchInputs) {
    return { outs: news };
  },
  async read(id: string, props: ModelSwitchInputs) {
    return { id, props };
  },
  async delete() {},
};

/** Type token: pulumi-nodejs:dynamic/guardian:ModelSwitch. */
export class ModelSwitchRecord extends pulumi.dynamic.Resource {
  declare readonly model: pulumi.Output<CreditModel>;
  declare readonly steps: pulumi.Output<string[]>;

  constructor(name: string, args: ModelSwitchInputs, opts?: pulumi.CustomResourceOptions) {
    super(modelSwitchProvider, name, args, opts, "guardian", "ModelSwitch");
  }
}
