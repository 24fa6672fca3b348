// Reads every message of a bag, keeping those before an error and the error itself (the tests of
// truncated and hostile bags look at both).
import { openBag, type BagMessage } from '../../src/bag/reader.js';
import { DEFAULT_BAG_LIMITS } from '../../src/bag/limits.js';

export async function collect(bag: string, limits = DEFAULT_BAG_LIMITS): Promise<{ got: BagMessage[]; err: unknown }> {
  const r = await openBag(bag, { limits });
  const got: BagMessage[] = [];
  try {
    for await (const m of r.messages()) got.push(m);
    return { got, err: undefined };
  } catch (err) {
    return { got, err };
  } finally {
    await r.close();
  }
}
