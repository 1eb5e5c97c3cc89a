// convert with an s3://BUCKET/KEY output: streamed into a multipart upload (src/commands/upload.ts),
// aborted on any failure or on SIGINT/SIGTERM, so the key never holds a partial object.
import { uploadQcow2, uploadRaw } from '../../commands/upload.js'
import { ImageError } from '../../errors.js'
import type { ProgressMeter } from '../../commands/progress-meter.js'
import type { BlockDevice } from '../../format/device.js'
import { withUpload, type MultipartUpload } from '../../io/s3-upload.js'
import { parseS3Name } from '../../io/s3.js'
import { s3ClientFromEnv } from '../../node/s3.js'
import { parseSize } from '../size.js'

/** What convert's command line asks of an S3 target. */
export interface S3Target {
  output: string
  format: string
  options: Map<string, string>
  parallel: number
  progress: ProgressMeter | undefined
  /** Options given that an upload cannot honour (-n, -B, -c, --bitmaps), by their flag. */
  refused: string[]
}

/** Creation options an S3 target takes, per format. */
const TARGET_OPTIONS: Record<string, string[]> = { raw: [], qcow2: ['cluster_size', 'compat'] }

export async function convertToS3(source: BlockDevice, target: S3Target): Promise<void> {
  const allowed = TARGET_OPTIONS[target.format]
  if (!allowed) throw new ImageError('UNSUPPORTED', `${target.output}: an S3 target is written as raw or qcow2, not '${target.format}'`)
  if (target.refused.length > 0) throw new ImageError('UNSUPPORTED', `${target.output}: ${target.refused.join(', ')} not supported with an S3 target`)
  for (const key of target.options.keys()) if (!allowed.includes(key)) throw new ImageError('UNSUPPORTED', `${target.output}: -o ${key} is not supported with an S3 target`)
  const clusterSize = target.options.has('cluster_size') ? parseSize(target.options.get('cluster_size')!) : 65536
  const compat = target.options.get('compat') ?? '1.1'
  if (compat !== '1.1' && compat !== 'v3' && compat !== '0.10' && compat !== 'v2') throw new ImageError('INVALID_ARGUMENT', `Invalid parameter '${compat}'`)
  if (!Number.isInteger(Math.log2(clusterSize))) throw new ImageError('INVALID_ARGUMENT', 'Cluster size must be a power of two between 512 and 2048k')
  const location = parseS3Name(target.output)
  let active: MultipartUpload | undefined
  // Killed politely, the upload is aborted first (a SIGKILL leaves parts but never an object).
  const onSignal = (signal: NodeJS.Signals): void => {
    const exit = (): never => process.exit(signal === 'SIGINT' ? 130 : 143)
    if (active) void active.abort(true).then(exit, exit)
    else exit()
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await withUpload(s3ClientFromEnv(target.output), location, Math.min(target.parallel, 4), async (upload) => {
      const options = { progress: target.progress }
      if (target.format === 'raw') await uploadRaw(source, upload, options)
      else await uploadQcow2(source, upload, { ...options, clusterBits: Math.log2(clusterSize), version: compat === '0.10' || compat === 'v2' ? 2 : 3 })
    }, (upload) => { active = upload })
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
