/** A logger (DiscoveryLog shape) that keeps lines in memory for assertions. */
export function memoryLog() {
  const lines: { level: 'info' | 'warn'; obj: object; msg: string }[] = [];
  return {
    lines,
    info: (obj: object, msg: string) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj: object, msg: string) => void lines.push({ level: 'warn', obj, msg }),
    warnings: () => lines.filter((l) => l.level === 'warn'),
  };
}
