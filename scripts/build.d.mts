// Types for scripts/build.mjs (imported by the test setup).
export declare const SOURCE_DIRS: string[];
export declare function isStale(): boolean;
export declare function build(): boolean;
