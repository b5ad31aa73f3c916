// Text for numbers and times. Times from the engine are unix seconds; the server's are RFC 3339.

const pad = (n: number) => String(n).padStart(2, "0");

/** Local "YYYY-MM-DD HH:MM" (fixed width, for lists). */
export function dateTime(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function unixDateTime(at: number): string {
  return dateTime(new Date(at * 1000));
}

/** An RFC 3339 string as local "YYYY-MM-DD HH:MM"; shown as it came when it doesn't parse. */
export function rfcDateTime(s: string): string {
  const t = Date.parse(s);
  return Number.isNaN(t) ? s : dateTime(new Date(t));
}

/** An RFC 3339 string as a local date "YYYY-MM-DD". */
export function rfcDate(s: string): string {
  const t = Date.parse(s);
  if (Number.isNaN(t)) return s;
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function count(n: number): string {
  return n.toLocaleString("en-US");
}

/** "1 build", "3 builds". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** "80, 100" → [80, 100]; null when any part is not a whole number. */
export function parseThresholds(text: string): number[] | null {
  const parts = text
    .split(/[,\s]+/)
    .map((p) => p.trim().replace(/%$/, ""))
    .filter((p) => p !== "");
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    out.push(Number(p));
  }
  return out;
}

export function isHhMm(s: string): boolean {
  return /^([01]\d|2[0-3]):[0-5]\d$/.test(s);
}

export function isYmd(s: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(`${s}T00:00:00Z`));
}
