import Foundation
import StreamBusTestSupport
import Testing

/// `sbctl drill` against a `sbctl local` cluster: the workload alone, each failover drill in
/// local mode, broker failover in remote mode (fault and recover commands doing the kill and
/// the restart), and drills that must FAIL. One cluster, drills in turn (each leaves it healed).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DrillTests {
  typealias JSON = [String: Any]

  /// Short phases: the drills' own timing is what is under test, not long runs.
  static let shortPhases = [
    "--warmup-s", "1", "--fault-duration-s", "1", "--settle-s", "0.5", "--rate", "300",
    "--request-timeout-ms", "2000", "--output", "json",
  ]

  @Test func drillsPassAgainstALocalClusterAndFailWhenTheFaultOrRecoveryFails() async throws {
    try await ProcessHarness.run { harness in
      let directory = harness.rootDirectory.appendingPathComponent("local")
      defer { LocalBrokerClusterTests.killListed(directory) }
      func sbctl(_ arguments: [String]) async throws -> ProcessResult {
        try await harness.run(executableNamed: "sbctl", arguments: arguments, timeoutMs: 120_000)
      }
      try await sbctl(["local", "up", "--dir", directory.path, "--no-demo-topic"]).checkSuccess()

      // The workload alone: paced, checked, one JSON object on stdout.
      let workload = try await sbctl([
        "--cluster-dir", directory.path, "drill", "workload", "--topic", "plain",
        "--create-topic", "--duration-s", "2", "--rate", "300", "--output", "json",
      ])
      #expect(workload.exit == .exited(code: 0), "\(workload.stderrText)")
      let report = try Self.json(workload.stdoutText)
      Self.checkWorkload(report, topic: "plain")
      let sent = try #require(report["sent"] as? Int)
      #expect((100...700).contains(sent), "--rate 300 for 2 s sent \(sent)")
      #expect(report["recordsRead"] as? Int == sent)
      let partitions = try #require(report["partitions"] as? [JSON])
      #expect(partitions.map { $0["partition"] as? Int } == [0, 1, 2])
      for partition in partitions {
        let first = try #require(partition["firstAckAtMs"] as? Int)
        let last = try #require(partition["lastAckAtMs"] as? Int)
        #expect(first <= last)
        #expect(first >= report["startedAtMs"] as? Int ?? .max)
        #expect((partition["ackGaps"] as? [JSON]) != nil)
      }

      // Local mode, each drill on the same topic (earlier drills' records stay out of the check).
      let cluster = ["--cluster-dir", directory.path]
      for drill in ["broker-failover", "metaserver-failover", "partition"] {
        let result = try await sbctl(["drill", drill] + cluster + Self.shortPhases)
        try Self.checkPass(result, drill: drill, mode: "local")
      }

      // Remote mode: the commands do the kill and the restart, told the target by SB_DRILL_*.
      let remote = try await sbctl(
        cluster + [
          "drill", "broker-failover", "--fault-command", "kill -9 $SB_DRILL_BROKER_PID",
          "--recover-command",
          "\"$SB_DRILL_SBCTL\" local start --dir \"$SB_DRILL_CLUSTER_DIR\" --node broker-$SB_DRILL_BROKER_ID",
        ] + Self.shortPhases)
      let remoteResult = try Self.checkPass(remote, drill: "broker-failover", mode: "remote")
      #expect(Self.event(remoteResult, "recovery started: recover command") != nil)

      // A fault command that fails: FAIL, exit 1, the reason named, nothing lost.
      let failed = try await sbctl(
        ["drill", "partition", "--fault-command", "echo no route to host >&2; exit 3"] + cluster
          + Self.shortPhases)
      #expect(failed.exit == .exited(code: 1), "\(failed.stderrText)")
      let failedResult = try Self.json(failed.stdoutText)
      #expect(failedResult["verdict"] as? String == "FAIL")
      let reasons = try #require(failedResult["reasons"] as? [String])
      #expect(reasons.count == 1)
      #expect(reasons.first?.contains("fault command failed (exit code 3)") == true, "\(reasons)")
      #expect(reasons.first?.contains("no route to host") == true, "\(reasons)")
      #expect(failedResult["unavailabilityMs"] is NSNull)
      Self.checkWorkload(try #require(failedResult["workload"] as? JSON), topic: "drill")

      // A fault command that hangs is killed (with whatever it started) after the timeout.
      let hung = try await sbctl(
        [
          "drill", "broker-failover", "--fault-command", "sleep 30 & sleep 30",
          "--command-timeout-s", "0.5",
        ] + cluster + Self.shortPhases)
      #expect(hung.exit == .exited(code: 1), "\(hung.stderrText)")
      let hungReasons = try #require(try Self.json(hung.stdoutText)["reasons"] as? [String])
      #expect(
        hungReasons.first?.contains("fault command failed (did not finish within 0.500s (killed))")
          == true, "\(hungReasons)")

      // A failover slower than the recovery timeout: FAIL; the broker is restarted anyway.
      let slow = try await sbctl(
        ["drill", "broker-failover", "--recovery-timeout-s", "0.3"] + cluster + Self.shortPhases)
      #expect(slow.exit == .exited(code: 1), "\(slow.stderrText)")
      let slowResult = try Self.json(slow.stdoutText)
      #expect(slowResult["verdict"] as? String == "FAIL")
      let slowReasons = try #require(slowResult["reasons"] as? [String])
      #expect(
        slowReasons.first?.hasPrefix("no recovery within 0.3 s of the fault") == true,
        "\(slowReasons)")
      #expect(Self.event(slowResult, "recovery started: restarted broker") != nil)
    }
  }

  @Test func invalidValuesAndAMissingClusterExitTwo() async throws {
    try await ProcessHarness.run { harness in
      let rate = try await harness.run(
        executableNamed: "sbctl",
        arguments: [
          "drill", "workload", "--topic", "t", "--bootstrap", "127.0.0.1:1", "--rate", "0",
        ])
      #expect(rate.exit == .exited(code: 2))
      #expect(rate.stderrText.contains("--rate must be 1...1000000, got 0"), "\(rate.stderrText)")
      let local = try await harness.run(
        executableNamed: "sbctl", arguments: ["drill", "broker-failover"])
      #expect(local.exit == .exited(code: 2))
      #expect(local.stderrText.contains("local mode needs the cluster"), "\(local.stderrText)")
      let missing = try await harness.run(
        executableNamed: "sbctl",
        arguments: [
          "--cluster-dir", harness.rootDirectory.appendingPathComponent("none").path, "drill",
          "partition",
        ])
      #expect(missing.exit == .exited(code: 2))
      #expect(missing.stderrText.contains("no local cluster in"), "\(missing.stderrText)")
    }
  }

  // MARK: - Checks

  static func json(_ text: String) throws -> JSON {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(value as? JSON)
  }

  static func checkWorkload(_ report: JSON, topic: String) {
    #expect(report["verdict"] as? String == "PASS", "\(report)")
    #expect(report["topic"] as? String == topic)
    #expect((report["violations"] as? [Any])?.isEmpty == true)
    #expect(report["historyFile"] is NSNull)
    let acknowledged = report["acknowledged"] as? Int ?? 0
    #expect(acknowledged > 0)
    #expect(
      report["sent"] as? Int == acknowledged + (report["failed"] as? Int ?? -1)
        + (report["indeterminate"] as? Int ?? -1))
    #expect((report["startedAtMs"] as? Int ?? .max) <= (report["finishedAtMs"] as? Int ?? 0))
  }

  /// The time of the first timeline event starting with `prefix`.
  static func event(_ result: JSON, _ prefix: String) -> Int? {
    let timeline = result["timeline"] as? [JSON] ?? []
    return timeline.first { ($0["event"] as? String)?.hasPrefix(prefix) == true }?["atMs"] as? Int
  }

  /// A PASS with every step observed in order and the unavailability measured.
  @discardableResult
  static func checkPass(_ outcome: ProcessResult, drill: String, mode: String) throws -> JSON {
    #expect(outcome.exit == .exited(code: 0), "\(drill): \(outcome.stderrText)")
    let result = try json(outcome.stdoutText)
    print("\(drill) (\(mode)): unavailability \(result["unavailabilityMs"] ?? "-") ms")
    #expect(result["drill"] as? String == drill)
    #expect(result["mode"] as? String == mode)
    #expect(result["verdict"] as? String == "PASS", "\(result["reasons"] ?? "")")
    #expect((result["reasons"] as? [Any])?.isEmpty == true)
    let timeline = try #require(result["timeline"] as? [JSON])
    let times = timeline.compactMap { $0["atMs"] as? Int }
    #expect(times.count == timeline.count)
    #expect(times == times.sorted())
    let injected = try #require(event(result, "fault injected"), "\(timeline)")
    let detected = try #require(event(result, "fault detected"), "\(timeline)")
    let leader = try #require(event(result, "new leader"), "\(timeline)")
    let written = try #require(event(result, "first successful write"), "\(timeline)")
    let healing = try #require(event(result, "recovery started"), "\(timeline)")
    let recovered = try #require(event(result, "recovered"), "\(timeline)")
    #expect(injected <= detected && detected <= leader)
    #expect(injected < written && written <= healing && healing <= recovered)
    let unavailability = try #require(result["unavailabilityMs"] as? Int)
    #expect(unavailability > 0 && unavailability < 30_000)
    let workload = try #require(result["workload"] as? JSON)
    checkWorkload(workload, topic: "drill")
    if drill != "metaserver-failover", unavailability >= 200 {
      // The measured outage is the drill partition's acknowledgement gap around the fault.
      let partitions = try #require(workload["partitions"] as? [JSON])
      let gaps = partitions.first { $0["partition"] as? Int == 0 }?["ackGaps"] as? [JSON] ?? []
      #expect(
        gaps.contains {
          ($0["toMs"] as? Int ?? 0) - ($0["fromMs"] as? Int ?? 0) == unavailability
            && ($0["toMs"] as? Int ?? 0) == written
        }, "\(gaps) vs \(unavailability) ms ending at \(written)")
    }
    return result
  }
}
