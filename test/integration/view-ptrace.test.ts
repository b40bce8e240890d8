// test/integration/view.test.ts again under the ptrace tracer alone: the default is unotify
// where the kernel has its synchronous wake-up, and every view test passes under both.
process.env.TETHER_TEST_TRACER = 'ptrace';
await import('./view.test.ts');
