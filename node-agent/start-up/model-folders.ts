import { ConfigError } from "../configuration/config-error.ts";
import { ensureDemoModels } from "../demo-models/demo-models.ts";
import { currentHost, pathsOf, type Host } from "../platform/host.ts";
import { isDirectory, lmStudioModels } from "../platform/lmstudio-models.ts";
import { userDirs } from "../platform/user-dirs.ts";

export interface ModelFolders {
  dirs: string[];
  /** Why these folders, when the user did not name them. */
  reason?: string;
}

/**
 * The folders the agent serves: the ones given, which must exist; with none given, LM Studio's
 * models folder when there is one (the models the user already has), else the generated demo
 * models in lmgate's data folder.
 */
export async function chooseModelFolders(
  given: string[],
  options: { host?: Host; onProgress?: (message: string) => void } = {},
): Promise<ModelFolders> {
  const host = options.host ?? currentHost();
  if (given.length > 0) {
    for (const dir of given) {
      if (!(await isDirectory(dir))) {
        throw new ConfigError(`the models folder ${dir} does not exist (or is not a folder); --models takes a folder of .gguf files, like ~/.lmstudio/models`);
      }
    }
    return { dirs: given };
  }
  const lmStudio = await lmStudioModels(host);
  if (await isDirectory(lmStudio.dir)) {
    return { dirs: [lmStudio.dir], reason: `no --models given: serving LM Studio's models folder ${lmStudio.dir} (${lmStudio.source})` };
  }
  const demo = pathsOf(host).join(userDirs(host).data, "demo-models");
  await ensureDemoModels(demo, options.onProgress ? { onProgress: options.onProgress } : {});
  return {
    dirs: [demo],
    reason: `no --models given and no LM Studio models folder (${lmStudio.dir}): serving the generated demo models in ${demo}`,
  };
}
