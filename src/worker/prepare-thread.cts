// The preparation pools' entry: CommonJS that loads prepare.ts with import() (see entry.cts for why).
import { handler } from './entry.cjs';
import type * as Prepare from './prepare.js';

const loaded: Promise<typeof Prepare> = import('./prepare.js');
export default handler(loaded, 'default');
export const compileText = handler(loaded, 'compileText');
