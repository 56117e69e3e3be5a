import { makeVolume, startGlusterd } from "../test/e2e/volumes.js"
await startGlusterd()
const v = makeVolume("exp", true)
console.log(v.mounts[0], v.name)
