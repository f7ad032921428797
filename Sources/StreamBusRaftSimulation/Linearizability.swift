// Linearizability checking of a key-value history (Wing & Gong's search with Lowe's
// memoization, as in Porcupine). A map of registers is checked one key at a time: the
// model is compositional, and per-key histories are small enough for exhaustive search.

/// One client operation as the client saw it. Times come from one logical clock that
/// never repeats a value, so every pair of events is ordered.
public struct ClientOperation: Sendable, Hashable {
  public enum Kind: Sendable, Hashable {
    case write(UInt64)
    /// The value returned (nil: the key had no value).
    case read(UInt64?)
  }

  public var id: UInt64
  public var key: UInt8
  public var kind: Kind
  public var invokedAt: UInt64
  /// Nil when the outcome is unknown (the client never heard back): the operation may or
  /// may not have taken effect, at any time after its invocation.
  public var returnedAt: UInt64?

  public init(id: UInt64, key: UInt8, kind: Kind, invokedAt: UInt64, returnedAt: UInt64?) {
    self.id = id
    self.key = key
    self.kind = kind
    self.invokedAt = invokedAt
    self.returnedAt = returnedAt
  }
}

public enum LinearizabilityChecker {
  /// Upper bound on explored (linearized set, state) pairs per key. Beyond it the search
  /// gives up and the key counts as inconclusive rather than running for hours.
  public static let searchStatesMax = 100_000

  public enum Verdict: Sendable, Equatable {
    case linearizable
    case violation(String)
    /// The search bound was hit for these keys (no violation found within it).
    case inconclusive([UInt8])
  }

  /// Returns nil if the history is linearizable (or the search was inconclusive),
  /// otherwise the first key whose sub-history is not, with a description.
  public static func check(_ history: [ClientOperation]) -> String? {
    if case .violation(let problem) = verdict(history) { return problem }
    return nil
  }

  public static func verdict(_ history: [ClientOperation]) -> Verdict {
    let byKey = Dictionary(grouping: history, by: \.key)
    var inconclusive: [UInt8] = []
    for key in byKey.keys.sorted() {
      // A fixed order keeps the search (and its cost) the same in every process.
      let operations = (byKey[key] ?? []).sorted { ($0.invokedAt, $0.id) < ($1.invokedAt, $1.id) }
      let result = checkRegister(operations)
      if result == nil {
        inconclusive.append(key)
        continue
      }
      if result == false {
        let lines = operations.sorted { $0.invokedAt < $1.invokedAt }.map { operation in
          "#\(operation.id) \(operation.kind) [\(operation.invokedAt), "
            + "\(operation.returnedAt.map(String.init) ?? "?")]"
        }
        return .violation(
          "key \(key) history not linearizable: " + lines.joined(separator: "; "))
      }
    }
    return inconclusive.isEmpty ? .linearizable : .inconclusive(inconclusive)
  }

  private struct Event {
    var operation: Int
    var isCall: Bool
    var time: UInt64
    var previous: Int
    var next: Int
    var match: Int
  }

  /// Exhaustive search for a linearization of one register's operations; nil when the
  /// search bound was reached first.
  static func checkRegister(_ operations: [ClientOperation]) -> Bool? {
    if operations.isEmpty { return true }
    // Events sorted by time; unknown returns go last (they may take effect any time).
    var raw: [(operation: Int, isCall: Bool, time: UInt64)] = []
    for (position, operation) in operations.enumerated() {
      raw.append((position, true, operation.invokedAt))
      raw.append((position, false, operation.returnedAt ?? .max))
    }
    raw.sort {
      ($0.time, $0.isCall ? 0 : 1, $0.operation) < ($1.time, $1.isCall ? 0 : 1, $1.operation)
    }
    // Doubly linked list with a sentinel at position 0.
    var events = [Event(operation: -1, isCall: false, time: 0, previous: -1, next: 1, match: -1)]
    var callPosition = [Int](repeating: 0, count: operations.count)
    for (offset, item) in raw.enumerated() {
      let position = offset + 1
      events.append(
        Event(
          operation: item.operation, isCall: item.isCall, time: item.time, previous: position - 1,
          next: position + 1 <= raw.count ? position + 1 : -1, match: -1))
      if item.isCall {
        callPosition[item.operation] = position
      } else {
        let call = callPosition[item.operation]
        events[call].match = position
        events[position].match = call
      }
    }

    var knownRemaining = operations.filter { $0.returnedAt != nil }.count
    var state: UInt64? = nil
    var linearized = [UInt64](repeating: 0, count: (operations.count + 63) / 64)
    var cache = Set<CacheKey>()
    var stack: [(call: Int, state: UInt64?)] = []

    func lift(_ call: Int) {
      let ret = events[call].match
      events[events[call].previous].next = events[call].next
      if events[call].next != -1 { events[events[call].next].previous = events[call].previous }
      events[events[ret].previous].next = events[ret].next
      if events[ret].next != -1 { events[events[ret].next].previous = events[ret].previous }
    }
    func unlift(_ call: Int) {
      let ret = events[call].match
      events[events[ret].previous].next = ret
      if events[ret].next != -1 { events[events[ret].next].previous = ret }
      events[events[call].previous].next = call
      if events[call].next != -1 { events[events[call].next].previous = call }
    }

    var cursor = events[0].next
    while knownRemaining > 0 {
      precondition(cursor != -1, "ran off the event list with operations left")
      let event = events[cursor]
      if event.isCall {
        let operation = operations[event.operation]
        var newState = state
        var allowed = true
        switch operation.kind {
        case .write(let value): newState = value
        case .read(let value): allowed = value == state
        }
        if allowed {
          var newLinearized = linearized
          newLinearized[event.operation / 64] |= 1 << UInt64(event.operation % 64)
          if cache.count >= searchStatesMax { return nil }
          if cache.insert(CacheKey(linearized: newLinearized, state: newState)).inserted {
            stack.append((cursor, state))
            state = newState
            linearized = newLinearized
            if operation.returnedAt != nil { knownRemaining -= 1 }
            lift(cursor)
            cursor = events[0].next
            continue
          }
        }
        cursor = event.next
      } else {
        // An operation returned before we could place it: undo the latest choice.
        guard let (call, previousState) = stack.popLast() else { return false }
        state = previousState
        let operation = events[call].operation
        linearized[operation / 64] &= ~(1 << UInt64(operation % 64))
        if operations[operation].returnedAt != nil { knownRemaining += 1 }
        unlift(call)
        cursor = events[call].next
      }
    }
    return true
  }

  private struct CacheKey: Hashable {
    var linearized: [UInt64]
    var state: UInt64?
  }
}
