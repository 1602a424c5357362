// The runner pool's entry: CommonJS that loads runner.ts with import() (see entry.cts for why).
import { handler } from './entry.cjs';
import type * as Runner from './runner.js';

const loaded: Promise<typeof Runner> = import('./runner.js');
export default handler(loaded, 'default');
export const runBatch = handler(loaded, 'runBatch');
