// Produces tests/traces/node_esm.txt (ES module, async frames): node node_esm_src.mjs 2> node_esm.txt
class Store {
  async load(key) {
    await null;
    return this.parse(key);
  }

  parse(key) {
    throw new RangeError(`unknown key: ${key}`);
  }
}

async function main() {
  await new Store().load('colour');
}

await main();
