// S3 on Node: the client configured from this process's AWS_* environment variables.
import { S3Client, S3Storage, parseS3Name, s3ConfigFromEnv } from '../io/s3.js'

/** A client for `name`'s bucket, configured from the environment. */
export function s3ClientFromEnv(name: string): S3Client {
  return new S3Client(s3ConfigFromEnv(process.env, name))
}

/** Opens `s3://BUCKET/KEY` for reading. */
export async function openS3(name: string): Promise<S3Storage> {
  return S3Storage.open(s3ClientFromEnv(name), parseS3Name(name))
}
