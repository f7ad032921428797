import Foundation
import StreamBusSpawn

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs the remote-mode `--fault-command` and `--recover-command` lines with `/bin/sh -c`, in
/// a process group of their own (a timeout kills the whole group, ssh and all), with the
/// drill's `SB_DRILL_*` variables added to the environment and the output captured.
enum DrillShell {
  struct Outcome: Sendable {
    var exit: ChildExit?
    var output: String
    var durationMs: Int64
    /// Set when the command could not start or did not finish in time.
    var problem: String?

    var succeeded: Bool { problem == nil && exit == .exited(code: 0) }

    /// `exit code 3`, `killed by signal 9`, or the problem.
    var summary: String {
      if let problem { return problem }
      return exit?.description ?? "no exit status"
    }

    /// The output's last lines, indented, for a failure reason.
    var outputTail: String {
      let lines = output.split(separator: "\n", omittingEmptySubsequences: false).suffix(10)
      let text = lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
      return text.isEmpty ? "(no output)" : text
    }
  }

  static func run(_ command: String, environment extra: [String: String], timeoutMs: Int64)
    async -> Outcome
  {
    let started = ContinuousClock.now
    func elapsedMs() -> Int64 {
      let (seconds, attoseconds) = (ContinuousClock.now - started).components
      return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
    let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent(
      "sbctl-drill-command-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
    defer { try? FileManager.default.removeItem(at: outputFile) }
    var environment = ProcessInfo.processInfo.environment
    environment.merge(extra) { _, drill in drill }
    let pid: pid_t
    do {
      pid = try ChildProcess.spawn(
        executable: "/bin/sh", arguments: ["-c", command],
        streams: ChildStreams(stdoutPath: outputFile.path, stderrPath: nil, append: false),
        environment: environment, newSession: true)
    } catch {
      return Outcome(exit: nil, output: "", durationMs: 0, problem: "could not start: \(error)")
    }
    let deadline = started + .milliseconds(timeoutMs)
    var exit: ChildExit?
    var problem: String?
    while exit == nil {
      do {
        exit = try ChildProcess.reapIfExited(pid)
      } catch {
        problem = "\(error)"
        break
      }
      if exit != nil { break }
      if ContinuousClock.now >= deadline {
        // The shell leads its own session, so its pid is the group id of everything it ran.
        kill(-pid, SIGKILL)
        let reapDeadline = ContinuousClock.now + .seconds(5)
        while exit == nil && ContinuousClock.now < reapDeadline {
          try? await Task.sleep(for: .milliseconds(10))
          exit = try? ChildProcess.reapIfExited(pid)
        }
        problem = "did not finish within \(DrillTimeline.seconds(timeoutMs)) (killed)"
        break
      }
      try? await Task.sleep(for: .milliseconds(20))
    }
    let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
    return Outcome(exit: exit, output: output, durationMs: elapsedMs(), problem: problem)
  }
}
