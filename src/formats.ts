// The formats qimg knows, in probing order. The one place that lists them: everything else
// asks the modules (format/module.ts).
import type { FormatModule } from './format/module.js'
import { qcow2Module } from './qcow2/module.js'
import { qcowModule } from './qcow/module.js'
import { rawModule } from './raw-module.js'
import { luksModule } from './luks/module.js'
import { vdiModule } from './vdi/module.js'
import { vpcModule } from './vpc/module.js'
import { vmdkModule } from './vmdk/module.js'
import { vhdxModule } from './vhdx/module.js'

export const formatModules: readonly FormatModule[] = [qcow2Module, qcowModule, luksModule, vdiModule, vmdkModule, vpcModule, vhdxModule, rawModule]

/** The module named `name`, if qimg has it. */
export function findFormatModule(name: string, modules: readonly FormatModule[] = formatModules): FormatModule | undefined {
  return modules.find((m) => m.name === name)
}

/**
 * The format of the temporary overlay BDRV_O_SNAPSHOT puts over an image (qemu-io -s, qemu-nbd
 * -s): block.c bdrv_append_temp_snapshot always makes a qcow2 one.
 */
export const SNAPSHOT_OVERLAY_FORMAT = 'qcow2'
