// The README and docs/ as a reader follows them: every relative link and image resolves (and its
// #anchor names a heading), every docs/*.md path the text names exists, nothing points outside
// the repository, and no text invites `npx autoprune-ros` (outside the clone npx would fetch an
// unrelated package of that name from the registry).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? markdownFiles(p) : f.endsWith('.md') ? [p] : [];
  });
}

const DOCS = [path.join(root, 'README.md'), ...markdownFiles(path.join(root, 'docs'))];

/** The text outside fenced code blocks (links and headings there are not Markdown). */
function prose(md: string): string {
  return md.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2. */
export function anchorsOf(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(md).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = (m[1] as string)
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const k = seen.get(base) ?? 0;
    seen.set(base, k + 1);
    out.add(k ? `${base}-${k}` : base);
  }
  return out;
}

/** Inline links and images: [text](target) and ![alt](target), target without a title. */
function linksOf(md: string): string[] {
  return [...prose(md).replace(/`[^`\n]*`/g, '').matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] as string);
}

describe('README and docs', () => {
  it('finds the documents', () => {
    assert.ok(DOCS.length >= 8, DOCS.join(', '));
    assert.ok(existsSync(path.join(root, 'docs', 'development.md')));
  });

  for (const file of DOCS) {
    const rel = path.relative(root, file);
    it(`${rel}: every relative link and image resolves, anchors included`, () => {
      const md = readFileSync(file, 'utf8');
      const broken: string[] = [];
      for (const link of linksOf(md)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const to = target ? path.resolve(path.dirname(file), decodeURIComponent(target)) : file;
        if (!to.startsWith(root + path.sep) && to !== root) broken.push(`${link}: outside the repository`);
        else if (!existsSync(to)) broken.push(`${link}: no such file`);
        else if (anchor && to.endsWith('.md') && !anchorsOf(readFileSync(to, 'utf8')).has(anchor)) broken.push(`${link}: no heading #${anchor} in ${path.relative(root, to)}`);
      }
      assert.deepEqual(broken, []);
    });

    it(`${rel}: every docs/ path it names exists; nothing outside the repository; no npx from elsewhere`, () => {
      const md = readFileSync(file, 'utf8');
      const missing = [...md.matchAll(/(?<![\w./-])(docs\/[\w./-]+\.(?:md|svg|json))/g)].map((m) => m[1] as string).filter((p) => !existsSync(path.join(root, p)));
      assert.deepEqual(missing, []);
      assert.doesNotMatch(md, /\.\.\/shared\//, 'points at the workspace outside the repository');
      for (const line of md.split('\n').filter((l) => /\bnpx\b[^\n]*\bautoprune-ros\b/.test(l))) assert.match(line, /Do not run `npx autoprune-ros` outside the clone/, line);
    });
  }

  it('the CLI\'s help texts do not invite npx', () => {
    const cli = path.join(root, 'src', 'cli');
    for (const f of readdirSync(cli)) assert.doesNotMatch(readFileSync(path.join(cli, f), 'utf8'), /\bnpx\b/, f);
  });

  it('anchors follow GitHub\'s rules', () => {
    const a = anchorsOf('# A: b, `c`\n## Results: the bundled model\n```sh\n# not a heading\n```\n## Results: the bundled model\n');
    assert.deepEqual([...a], ['a-b-c', 'results-the-bundled-model', 'results-the-bundled-model-1']);
  });
});
