// Khronos glTF validator on one file: prints its issue counts and messages as JSON (exit 1 on errors).
// The validator is not a project dependency; install it outside the repository and point NODE_PATH at it:
//   mkdir -p /work/tools && (cd /work/tools && npm install gltf-validator)
//   NODE_PATH=/work/tools/node_modules node scripts/validate_gltf.js seed0000.glb
const fs = require('fs');
const validator = require('gltf-validator');
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])), {maxIssues: 100})
  .then((report) => {
    console.log(JSON.stringify({validatorVersion: report.validatorVersion, issues: report.issues,
                                image: report.info.resources.filter((r) => r.image).map((r) => r.image)}, null, 1));
    process.exit(report.issues.numErrors ? 1 : 0);
  })
  .catch((error) => { console.error('validation failed:', error); process.exit(2); });
