import ArgumentParser
import StreamBusRaft
import StreamBusRaftSimulation

/// Deterministic Raft simulator: every run is reproducible from its seed.
struct RaftSim: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "raft-sim",
    abstract: "Run the deterministic Raft simulator over one seed or a range of seeds.")

  @Option(help: "Run exactly this seed.")
  var seed: UInt64?

  @Option(help: "Run an inclusive range of seeds, written A..B.")
  var seeds: String?

  @Option(help: "Cluster size (3 or 5).")
  var nodes: Int = 3

  @Option(help: "Events in the safety phase per seed.")
  var steps: Int = 400

  @Option(
    help: """
      Comma-separated faults: \(SimulationFault.allCases.map(\.rawValue).joined(separator: ",")), \
      or all / none.
      """)
  var faults: String = "all"

  @Option(
    help: """
      Deliberate core bugs, to check that the checkers notice: \
      \(RaftFaultSwitch.allCases.map(\.rawValue).joined(separator: ",")).
      """)
  var bugs: String = ""

  @Flag(help: "Print the event trace (the whole run for one seed, the end of failing seeds).")
  var trace = false

  @Flag(help: "Stop at the first failing seed and say how many seeds it took to detect.")
  var firstFailure = false

  func validate() throws {
    guard (seed == nil) != (seeds == nil) else {
      throw ValidationError("give exactly one of --seed or --seeds")
    }
    guard nodes == 3 || nodes == 5 else { throw ValidationError("--nodes must be 3 or 5") }
    guard steps > 0 else { throw ValidationError("--steps must be positive") }
  }

  func run() throws {
    let faultSet: Set<SimulationFault>
    do {
      faultSet = try SimulationFault.parseList(faults)
    } catch {
      throw ValidationError("\(error)")
    }
    let raftFaults = try parseBugs(bugs)
    let range = try seedRange()
    var passed = 0
    var failed = 0
    var inconclusive = 0
    for seed in range {
      var options = SimulationOptions(
        seed: seed, nodeCount: nodes, steps: steps, faults: faultSet, raftFaults: raftFaults)
      options.recordsEvents = trace
      let result = Simulator.run(options)
      if result.statistics["linearizability inconclusive keys"] != nil { inconclusive += 1 }
      if let failure = result.failure {
        failed += 1
        if trace {
          for event in result.events.suffix(60) { print("  \(event)") }
        }
        print("FAIL seed \(seed): \(failure)")
        print("  reproduce: \(options.reproduceCommand)")
        if firstFailure {
          print("first failure after \(seed - range.lowerBound + 1) seeds")
          break
        }
      } else {
        passed += 1
        if range.count == 1 && trace {
          for event in result.events { print("  \(event)") }
        }
        if range.count == 1 {
          print(
            "seed \(seed): ok, \(result.committedIndex) entries committed, "
              + "\(result.operations) client operations")
          for (name, count) in result.statistics.sorted(by: { $0.key < $1.key }) {
            print("  \(name): \(count)")
          }
        }
      }
    }
    if inconclusive > 0 {
      print("\(inconclusive) seeds hit the linearizability search bound on some key")
    }
    print("\(passed) passed, \(failed) failed")
    if failed > 0 { throw ExitCode(1) }
  }

  private func seedRange() throws -> ClosedRange<UInt64> {
    if let seed { return seed...seed }
    let parts = (seeds ?? "").split(separator: ".", omittingEmptySubsequences: true)
    guard (seeds ?? "").contains(".."), parts.count == 2, let low = UInt64(parts[0]),
      let high = UInt64(parts[1]), low <= high
    else {
      throw ValidationError("--seeds must look like 1..500")
    }
    return low...high
  }

  private func parseBugs(_ text: String) throws -> RaftTestFaults {
    do {
      return try RaftFaultSwitch.parseList(text)
    } catch {
      throw ValidationError("\(error)")
    }
  }
}

RaftSim.main()
