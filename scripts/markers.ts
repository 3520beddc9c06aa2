/**
 * The generated part of a document: text between a start marker (matched by its beginning, so it may carry a note)
 * and an end marker is replaced; the rest is kept. Used by the scripts that write the model card's, the decision
 * history's and the benchmark results' tables.
 */
export function replaceBetween(doc: string, startTag: string, endTag: string, block: string, what: string): string {
  const start = doc.indexOf(startTag);
  const end = doc.indexOf(endTag);
  if (start < 0 || end < start) throw new Error(`${what} has no ${startTag} … ${endTag} markers`);
  return doc.slice(0, start) + block + doc.slice(end);
}
