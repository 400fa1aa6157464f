/** What discovery needs from a logger (pino's Logger satisfies it). */
export interface DiscoveryLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}
