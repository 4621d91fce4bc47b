// `homeostat chat ["question"]`: one question, or an interactive prompt without one.
import { createInterface } from 'node:readline/promises';
import { describeError } from '../../core/mod.ts';
import { subjects, type Bus, type ChatAnswer } from '../../bus/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { withBus } from '../client.ts';
import { paint, printJson, println } from '../output.ts';

const HELP = `Usage: homeostat chat ["question"] [--yes] [--json] [--nats URL]

Ask the fleet in plain language: "what is down?", "why is 159 down?", "what happens if node-b
dies?", "start layer 2", "run chaos kill-layer1 in dry-run", "approve a1b2". Answers come from
live state, incidents and traces (ids cited); a local model (OLLAMA_HOST) only rephrases them.
Commands go through the same policy and approvals as the CLI.
  --yes   confirm a destructive or protected request up front
Without a question: an interactive prompt (Ctrl-D to leave).`;

async function ask(bus: Bus, question: string, confirm: boolean): Promise<ChatAnswer> {
  return bus.request<ChatAnswer>(subjects.chat(), 'ChatQuestion', { question, confirm, requestedBy: process.env.USER ?? 'operator' }, 30_000);
}

function render(a: ChatAnswer): string {
  const tail = [a.citations.length ? paint(`[${a.citations.join(', ')}]`, 'gray') : '', a.usedModel ? '' : paint(a.advisorAvailable === false ? '(built-in answer; the local model is unavailable)' : '(built-in answer)', 'gray')].filter(Boolean).join(' ');
  return `${a.answer}${tail ? `\n${tail}` : ''}`;
}

export async function chatMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, yes: { type: 'boolean', short: 'y', default: false } });
  if (values.help) {
    println(HELP);
    return 0;
  }
  return withBus(values, async (bus) => {
    if (positionals.length) {
      const a = await ask(bus, positionals.join(' '), values.yes);
      if (values.json) printJson(a);
      else println(render(a));
      return 0;
    }
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    let pending: string | undefined;
    try {
      for (;;) {
        const q = (await rl.question(paint('homeostat> ', 'cyan'))).trim();
        if (!q) continue;
        if (['exit', 'quit'].includes(q)) break;
        const confirm = pending !== undefined && /^(y|yes|confirm)$/i.test(q);
        let a: ChatAnswer;
        try {
          a = await ask(bus, confirm ? pending! : q, confirm || values.yes);
        } catch (e) {
          // one slow or failed answer is not the end of the conversation
          println(paint(describeError(e), 'red'));
          continue;
        }
        pending = a.needsConfirmation ? q : undefined;
        println(values.json ? JSON.stringify(a) : render(a));
        if (a.needsConfirmation) println(paint('confirm with "yes"', 'yellow'));
      }
    } catch (e) {
      if ((e as { code?: string }).code !== 'ABORT_ERR' && !/closed/.test((e as Error).message)) throw e;
    } finally {
      rl.close();
    }
    return 0;
  });
}
