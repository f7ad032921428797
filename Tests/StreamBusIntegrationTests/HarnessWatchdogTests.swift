import Foundation
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct HarnessWatchdogTests {
  /// A harness that outlives its watchdog has its processes killed, so a test stuck waiting
  /// on them fails instead of holding the run until CI's limit.
  @Test func watchdogKillsTheProcessesOfAHarnessThatOutlivesIt() async throws {
    try await ProcessHarness.withHarness("watchdog", watchdogSeconds: 1) { harness in
      let sleeper = try harness.start(
        executable: URL(fileURLWithPath: "/bin/sleep"), arguments: ["60"], label: "sleep")
      let exit = try await sleeper.waitForExit(timeoutMs: 20_000)
      #expect(exit == .signaled(signal: SIGKILL))
    }
  }

  @Test func aHarnessShutDownInTimeKeepsItsProcessesUntilThen() async throws {
    try await ProcessHarness.withHarness("no-watchdog", watchdogSeconds: 30) { harness in
      let sleeper = try harness.start(
        executable: URL(fileURLWithPath: "/bin/sleep"), arguments: ["60"], label: "sleep")
      try await Task.sleep(for: .milliseconds(1_500))
      #expect(sleeper.isRunning)
    }
  }
}
