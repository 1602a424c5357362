// The body-decoding pool's entry: CommonJS that loads decode.ts with import() (see entry.cts for why).
import { handler } from './entry.cjs';
import type * as Decode from './decode.js';

const loaded: Promise<typeof Decode> = import('./decode.js');
export default handler(loaded, 'default');
