import Foundation
import StreamBusSpawn
import StreamBusTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The operator runbooks in `Runbooks/` are executable: every ```sh block of a runbook runs,
/// in document order, in one `bash -euo pipefail` session against a fresh `sbctl local up`
/// cluster (Runbooks/README.md has the convention). A block that fails fails the test with the
/// runbook, the block number and its line, the block and its output.
///
/// Serialized: each runbook kills, stops and restarts processes of its own 6-process cluster,
/// and failover timing on a 2-core machine is only trustworthy with one cluster at a time.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct RunbookTests {
  /// How long one runbook's blocks may take in all before the session is killed.
  static let runbookTimeoutMs = 240_000

  static let runbookDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // StreamBusIntegrationTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()  // package root
    .appendingPathComponent("Runbooks", isDirectory: true)

  /// Every runbook file name (README.md is the index, not a runbook).
  static let runbookNames: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: runbookDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".md") && $0 != "README.md" }.sorted()
  }()

  static func load(_ name: String) throws -> RunbookDocument {
    let url = runbookDirectory.appendingPathComponent(name)
    return try RunbookDocument(name: name, text: String(contentsOf: url, encoding: .utf8))
  }

  @Test func runbooksExistAndAreListedInTheIndex() throws {
    #expect(Self.runbookNames.count >= 8, "runbooks found: \(Self.runbookNames)")
    let index = try String(
      contentsOf: Self.runbookDirectory.appendingPathComponent("README.md"), encoding: .utf8)
    for name in Self.runbookNames {
      #expect(index.contains("(\(name))"), "Runbooks/README.md does not link \(name)")
    }
  }

  @Test(arguments: runbookNames)
  func runbookHasTheFourSectionsAndShellBlocks(name: String) throws {
    let runbook = try Self.load(name)
    #expect(
      runbook.missingSections.isEmpty,
      "\(name): missing or out-of-order sections: \(runbook.missingSections)")
    #expect(!runbook.shellBlocks.isEmpty, "\(name): no ```sh block, so nothing of it is tested")
    #expect(
      runbook.ambiguousFences.isEmpty,
      """
      \(name): fences \(runbook.ambiguousFences.map { "line \($0.line): ```\($0.language)" }) \
      are neither run nor plainly examples; use ```sh (run by the test) or ```text
      """)
  }

  @Test func parserFindsBlocksInListsAndSkipsOtherLanguages() throws {
    let text = """
      # Title
      ## Symptoms
      ```sh
      echo one
      ```
      ## Checks
      1. Step:

         ```sh
         echo two
           indented
         ```
      ## Actions
      ```text
      not run
      ```
      ```bash
      ambiguous
      ```
      ## Verify
      """
    let runbook = try RunbookDocument(name: "sample.md", text: text)
    #expect(runbook.shellBlocks.map(\.text) == ["echo one\n", "echo two\n  indented\n"])
    #expect(runbook.shellBlocks.map(\.line) == [3, 9])
    #expect(runbook.ambiguousFences.map(\.language) == ["bash"])
    #expect(runbook.missingSections.isEmpty)
    let unordered = try RunbookDocument(
      name: "b.md", text: "## Verify\n## Symptoms\n## Checks\n## Actions\n")
    #expect(unordered.missingSections == ["Verify"])
    #expect(throws: RunbookError.self) {
      try RunbookDocument(name: "c.md", text: "## Symptoms\n```sh\necho unterminated\n")
    }
  }

  /// The session itself, without a cluster: state carries from block to block, a failing
  /// block is named with its output, later blocks do not run, and a hung block is killed.
  @Test func sessionRunsBlocksInOneShellAndNamesTheFailingOne() async throws {
    try await ProcessHarness.withHarness("runbook-session") { harness in
      func session(_ text: String) throws -> RunbookSession {
        try RunbookSession(
          runbook: RunbookDocument(name: "sample.md", text: text),
          clusterDirectory: harness.rootDirectory.appendingPathComponent("cluster"),
          workDirectory: try harness.makeDirectory("run-\(UUID().uuidString)"))
      }
      let passing = try session(
        "```sh\nvalue=41\nhelper() { echo $((value + 1)); }\n```\n"
          + "```sh\n[ \"$(helper)\" = 42 ]\n[ -n \"$SB_CLUSTER_DIR\" ]\ncommand -v sbctl\n```\n")
      #expect(try await passing.run(timeoutMs: 30_000) == nil)

      let failing = try session(
        "intro\n```sh\necho first\n```\n\n```sh\necho visible output\nfalse\necho not reached\n```\n"
          + "```sh\ntouch never-created\n```\n")
      let report = try #require(try await failing.run(timeoutMs: 30_000))
      #expect(report.contains("Runbooks/sample.md: block 2 of 3 (```sh at line 6)"), "\(report)")
      let output = report.components(separatedBy: "its output (last 80 lines):").last ?? ""
      #expect(output.contains("visible output"))
      #expect(!output.contains("not reached"))
      #expect(report.contains("exit code 1"))
      #expect(
        !FileManager.default.fileExists(atPath: failing.workDirectory.path + "/never-created"))

      let unsetVariable = try session("```sh\necho \"$no_such_variable\"\n```\n")
      #expect(try await unsetVariable.run(timeoutMs: 30_000) != nil)

      let hanging = try session("```sh\nsleep 60 &\nsleep 60\n```\n")
      let started = ContinuousClock.now
      let timeout = try #require(try await hanging.run(timeoutMs: 1_000))
      #expect(timeout.contains("did not finish within 1000 ms"))
      #expect(ContinuousClock.now - started < .seconds(20))
    }
  }

  @Test(arguments: runbookNames)
  func runbookCommandsRunAgainstALocalCluster(name: String) async throws {
    let runbook = try Self.load(name)
    try #require(!runbook.shellBlocks.isEmpty, "\(name) has no ```sh block")
    try await ProcessHarness.withHarness("runbook-\(name)") { harness in
      let clusterDirectory = harness.rootDirectory.appendingPathComponent("cluster")
      let workDirectory = try harness.makeDirectory("run")
      defer {
        RunbookSession.stopEverything(
          clusterDirectory: clusterDirectory, root: harness.rootDirectory)
      }
      let started = ContinuousClock.now
      try await Self.startCluster(clusterDirectory, harness: harness)
      let clusterReady = ContinuousClock.now
      let session = try RunbookSession(
        runbook: runbook, clusterDirectory: clusterDirectory, workDirectory: workDirectory)
      let outcome = try await session.run(timeoutMs: Self.runbookTimeoutMs)
      let finished = ContinuousClock.now
      print(
        "runbook \(name): cluster up in \(clusterReady - started), "
          + "\(runbook.shellBlocks.count) blocks in \(finished - clusterReady)")
      if let failure = outcome {
        Issue.record(Comment(rawValue: failure))
      }
    }
  }
}

extension RunbookTests {
  /// `sbctl local up`. A start that fails is retried once from scratch, loudly: the
  /// runbooks are under test here, `local up` itself in LocalBrokerClusterTests, and on a
  /// machine shared with other test runs a broker has been seen to exit during `up` without
  /// a log line (a port taken between sbctl's check and the broker's bind is one way).
  static func startCluster(_ directory: URL, harness: ProcessHarness) async throws {
    let up = ["local", "up", "--dir", directory.path]
    let first = try await harness.run(executableNamed: "sbctl", arguments: up, timeoutMs: 90_000)
    guard !first.succeeded else { return }
    print(
      "RunbookTests: sbctl local up failed (\(first.exit)), retrying once:\n\(first.stderrText)")
    RunbookSession.stopEverything(clusterDirectory: directory, root: directory)
    try? FileManager.default.removeItem(at: directory)
    try await harness.run(executableNamed: "sbctl", arguments: up, timeoutMs: 90_000)
      .checkSuccess()
  }
}

/// A failure to read a runbook (unterminated fence).
struct RunbookError: Error, CustomStringConvertible {
  let description: String
}

/// The parts of a runbook the test cares about: its level-2 headings and fenced blocks.
struct RunbookDocument {
  struct Block {
    /// 1-based line of the opening fence.
    let line: Int
    let language: String
    let text: String
  }

  /// The sections every runbook has, in this order.
  static let requiredSections = ["Symptoms", "Checks", "Actions", "Verify"]
  /// Info strings that look runnable but are not run: a typo for `sh` would silently
  /// leave commands untested.
  static let ambiguousLanguages: Set<String> = ["bash", "shell", "console", "zsh", "shell-session"]

  let name: String
  let headings: [String]
  let blocks: [Block]

  init(name: String, text: String) throws {
    self.name = name
    var headings: [String] = []
    var blocks: [Block] = []
    var open: (line: Int, indent: Int, fence: String, language: String, lines: [String])?
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    for (index, rawLine) in lines.enumerated() {
      let line = String(rawLine)
      let indent = line.prefix { $0 == " " }.count
      let trimmed = line.dropFirst(indent)
      if var current = open {
        if trimmed.hasPrefix(current.fence),
          trimmed.allSatisfy({ $0 == "`" || $0 == " " })
        {
          let body = current.lines.map { $0 + "\n" }.joined()
          blocks.append(Block(line: current.line, language: current.language, text: body))
          open = nil
        } else {
          // Content of a fence inside a list item is indented like its fence.
          let removable = min(current.indent, line.prefix { $0 == " " }.count)
          current.lines.append(String(line.dropFirst(removable)))
          open = current
        }
        continue
      }
      if trimmed.hasPrefix("```") {
        let fence = String(trimmed.prefix { $0 == "`" })
        let language = trimmed.dropFirst(fence.count).trimmingCharacters(in: .whitespaces)
        open = (index + 1, indent, fence, language, [])
      } else if line.hasPrefix("## ") {
        headings.append(line.dropFirst(3).trimmingCharacters(in: .whitespaces))
      }
    }
    if let open {
      throw RunbookError(description: "\(name): the fence opened at line \(open.line) never closes")
    }
    self.headings = headings
    self.blocks = blocks
  }

  var shellBlocks: [Block] { blocks.filter { $0.language == "sh" } }

  var ambiguousFences: [Block] {
    blocks.filter { Self.ambiguousLanguages.contains($0.language.lowercased()) }
  }

  /// Required sections that are absent or out of order (a heading counts when it starts with
  /// the section's name, e.g. "Actions: restart the broker").
  var missingSections: [String] {
    var missing: [String] = []
    var searchFrom = 0
    for section in Self.requiredSections {
      if let found = headings[searchFrom...].firstIndex(where: { $0.hasPrefix(section) }) {
        searchFrom = found + 1
      } else {
        missing.append(section)
      }
    }
    return missing
  }
}

/// One bash session running a runbook's ```sh blocks in order.
///
/// The script writes the number of the block it is about to run to a progress file and sends
/// each block's output to its own file, so a failure names the block and shows what it printed.
struct RunbookSession {
  let runbook: RunbookDocument
  let clusterDirectory: URL
  let workDirectory: URL

  init(runbook: RunbookDocument, clusterDirectory: URL, workDirectory: URL) throws {
    self.runbook = runbook
    self.clusterDirectory = clusterDirectory
    self.workDirectory = workDirectory
  }

  var progressFile: URL { workDirectory.appendingPathComponent("progress") }
  var scriptFile: URL { workDirectory.appendingPathComponent("runbook.sh") }

  func outputFile(block number: Int) -> URL {
    workDirectory.appendingPathComponent("block-\(number).out")
  }

  func script() -> String {
    var script = "set -euo pipefail\ncd \(shellQuoted(workDirectory.path))\n"
    for (index, block) in runbook.shellBlocks.enumerated() {
      let number = index + 1
      script += "printf '%s\\n' \(number) > \(shellQuoted(progressFile.path))\n"
      script += "exec > \(shellQuoted(outputFile(block: number).path)) 2>&1\n"
      script += block.text
    }
    script += "printf 'done\\n' > \(shellQuoted(progressFile.path))\n"
    return script
  }

  /// Runs the script; nil when every block succeeded, else the failure report.
  func run(timeoutMs: Int) async throws -> String? {
    try script().write(to: scriptFile, atomically: true, encoding: .utf8)
    let executables = try ExecutableLocator.executable(named: "sbctl").deletingLastPathComponent()
    var environment = ProcessInfo.processInfo.environment
    // The runbook must say which cluster it talks to; nothing leaks in from the test's shell.
    for key in ["SB_BROKERS", "SB_METASERVERS", "SB_CLUSTER_DIR"] {
      environment[key] = nil
    }
    environment["PATH"] = executables.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
    environment["STREAMBUS_BIN_DIR"] = executables.path
    environment["SB_CLUSTER_DIR"] = clusterDirectory.path
    environment["TMPDIR"] = workDirectory.path
    let bash = try Self.bashPath()
    // A session of its own: the whole process group (blocks' background jobs included) can
    // be killed at once.
    let pid = try ChildProcess.spawn(
      executable: bash, arguments: ["--noprofile", "--norc", scriptFile.path],
      streams: ChildStreams(
        stdoutPath: workDirectory.appendingPathComponent("session.out").path, stderrPath: nil,
        append: false),
      environment: environment, newSession: true)
    let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
    var exit: ChildExit?
    while exit == nil {
      exit = try ChildProcess.reapIfExited(pid)
      if exit != nil { break }
      if ContinuousClock.now > deadline {
        kill(-pid, SIGKILL)
        while exit == nil {
          exit = try ChildProcess.reapIfExited(pid)
          usleep(2_000)
        }
        return report(reason: "did not finish within \(timeoutMs) ms (killed)")
      }
      try await Task.sleep(for: .milliseconds(50))
    }
    // Background jobs a block left behind would outlive the session.
    kill(-pid, SIGKILL)
    let progress = (try? String(contentsOf: progressFile, encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines)
    if exit == .exited(code: 0), progress == "done" { return nil }
    return report(reason: "ended with \(exit.map(\.description) ?? "?")")
  }

  private func report(reason: String) -> String {
    let progress =
      (try? String(contentsOf: progressFile, encoding: .utf8))?
      .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    let blocks = runbook.shellBlocks
    guard let number = Int(progress), (1...blocks.count).contains(number) else {
      let output =
        (try? String(
          contentsOf: workDirectory.appendingPathComponent("session.out"), encoding: .utf8)) ?? ""
      return "Runbooks/\(runbook.name): the session \(reason) outside any block "
        + "(progress \(progress)); output:\n\(output)"
    }
    let block = blocks[number - 1]
    let output = (try? String(contentsOf: outputFile(block: number), encoding: .utf8)) ?? ""
    let tail = output.split(separator: "\n", omittingEmptySubsequences: false).suffix(80)
      .joined(separator: "\n")
    return """
      Runbooks/\(runbook.name): block \(number) of \(blocks.count) (```sh at line \(block.line)) \
      failed: the session \(reason).
      ---- block \(number):
      \(block.text)---- its output (last 80 lines):
      \(tail)
      """
  }

  static func bashPath() throws -> String {
    for candidate in ["/bin/bash", "/usr/bin/bash"]
    where FileManager.default.isExecutableFile(atPath: candidate) {
      return candidate
    }
    throw HarnessError("bash not found in /bin or /usr/bin; the runbooks need it")
  }

  /// `sbctl local down`, then SIGKILL to everything cluster.json lists and to every process
  /// whose command line names a path under `root` (a metaserver a runbook started by hand,
  /// a drill left behind). None of them are children of the test.
  static func stopEverything(clusterDirectory: URL, root: URL) {
    if FileManager.default.fileExists(
      atPath: clusterDirectory.appendingPathComponent("cluster.json").path),
      let sbctl = try? ExecutableLocator.executable(named: "sbctl"),
      let pid = try? ChildProcess.spawn(
        executable: sbctl.path,
        arguments: ["local", "down", "--dir", clusterDirectory.path, "--grace-period-ms", "2000"],
        streams: ChildStreams(
          stdoutPath: root.appendingPathComponent("down.out").path, stderrPath: nil,
          append: false),
        environment: ProcessInfo.processInfo.environment)
    {
      let deadline = ContinuousClock.now + .seconds(30)
      while (try? ChildProcess.reapIfExited(pid)) == nil {
        if ContinuousClock.now > deadline {
          kill(pid, SIGKILL)
        }
        usleep(10_000)
      }
    }
    LocalBrokerClusterTests.killListed(clusterDirectory)
    for pid in processes(mentioning: root.path) {
      kill(pid, SIGKILL)
    }
  }

  /// Pids (other than this process) whose command line contains `text`.
  static func processes(mentioning text: String) -> [Int32] {
    let own = getpid()
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> Int32? in
      guard let pid = Int32(entry), pid != own,
        let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
      else { return nil }
      let commandLine = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
      return commandLine.contains(text) ? pid : nil
    }
  }
}

private func shellQuoted(_ text: String) -> String {
  "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
