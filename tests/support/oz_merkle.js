// Builds OpenZeppelin StandardMerkleTrees for the trees given on stdin
// ([[values...], ...] per tree) and prints, per tree, its root and each value's proof.
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

const TYPES = ["uint256", "address", "address", "address", "uint256"];
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const trees = JSON.parse(input).map((values) => {
    const tree = StandardMerkleTree.of(values, TYPES);
    return {
      root: tree.root,
      proofs: values.map((_, i) => tree.getProof(i)),
      dump: tree.dump(),
    };
  });
  process.stdout.write(JSON.stringify(trees));
});
