/** `trace`: read a replay trace (summary, re-scored planning errors) or diff two runs. */
import type { Command } from 'commander';

import { diffTraces, readTrace, scoreTrace } from '../replay/trace.js';
import type { Io, SetExit } from './common.js';

export function registerTrace(program: Command, io: Io, setExit: SetExit): void {
  program
    .command('trace <file>')
    .description('read a replay trace: summary and re-scored planning errors, or --diff against another run')
    .option('--diff <other>', 'compare with another trace of the same bag (plans, schedules; timings reported)')
    .option('--frames', 'print every frame')
    .option('--json', 'print one JSON object')
    .action(async (file: string, o: { diff?: string; frames?: boolean; json?: boolean }) => {
      const t = await readTrace(file);
      if (o.diff) {
        const d = diffTraces(t, await readTrace(o.diff));
        if (o.json) io.out(JSON.stringify(d));
        else {
          const f = (v: number | null, digits = 3) => (v === null ? '–' : v.toFixed(digits));
          io.out(
            [
              `${d.identical ? 'IDENTICAL (plans and schedules; timings not compared)' : 'DIFFERENT'}: ${d.a} vs ${d.b}`,
              `frames matched ${d.matched}, only in first ${d.onlyInA}, only in second ${d.onlyInB}`,
              `identical plans ${d.identicalPlans}/${d.matched}, identical schedules ${d.identicalSchedules}/${d.matched}, max waypoint difference ${d.maxWaypointDiffM.toExponential(3)} m, mean plan distance ${f(d.meanPlanDistanceM)} m`,
              `L2@3s ${f(d.planningA.l2At3sM)} vs ${f(d.planningB.l2At3sM)} m, ADE ${f(d.planningA.adeM)} vs ${f(d.planningB.adeM)} m`,
              `mean inference ${f(d.meanTotalMsA, 2)} vs ${f(d.meanTotalMsB, 2)} ms`,
            ].join('\n'),
          );
        }
        setExit(d.identical ? 0 : 3);
        return;
      }
      const { planning } = scoreTrace(t);
      const failed = t.frames.filter((f) => f.errorCode).length;
      const summary = { file, header: { ...t.header, bagStartNs: t.header.bagStartNs.toString() }, frames: t.frames.length, failed, complete: t.footer !== null, interrupted: t.footer?.interrupted ?? false, error: t.footer?.errorCode || null, planning };
      if (o.json) {
        io.out(JSON.stringify({ ...summary, ...(o.frames ? { frameList: t.frames } : {}) }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
        return;
      }
      const f = (v: number | null) => (v === null ? '–' : v.toFixed(3));
      const lines = [
        `trace ${file}: ${t.header.label} on ${t.header.bagPath}`,
        `model ${t.header.modelPath} (${t.header.backend}), ${t.header.mode}, written ${t.header.createdAt}`,
        `frames ${t.frames.length} (${failed} failed)${t.footer ? (t.footer.interrupted ? ', interrupted' : '') : ', no footer (the run was killed)'}${t.footer?.errorCode ? `, bag error ${t.footer.errorCode} at ${t.footer.errorFile}:${t.footer.errorOffset}` : ''}`,
        `re-scored: L2@1s ${f(planning.l2At1sM)} m, L2@2s ${f(planning.l2At2sM)} m, L2@3s ${f(planning.l2At3sM)} m, ADE ${f(planning.adeM)} m, FDE ${f(planning.fdeM)} m over ${planning.n} frames`,
      ];
      if (o.frames) {
        for (const fr of t.frames) {
          const kept = fr.prune ? fr.prune.kept.join('/') : '';
          const last = fr.waypoints[fr.waypoints.length - 1];
          lines.push(`  #${fr.index} stamp ${fr.stampNs} ${fr.errorCode || `kept ${kept} MI ${fr.prune?.mi1.toFixed(3)} total ${fr.timings?.totalMs.toFixed(2)} ms last waypoint (${last?.x.toFixed(2)}, ${last?.y.toFixed(2)})`}`);
        }
      }
      io.out(lines.join('\n'));
    });
}
