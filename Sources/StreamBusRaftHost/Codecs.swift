// Binary formats of the host: the peer frame, the address book (snapshot envelope and
// membership-change context) and the snapshot envelope. All use the core's big-endian
// RaftEncoder/RaftDecoder, so every length is checked before anything is allocated.

import StreamBusRaft
import StreamBusTransport

extension RaftEncoder {
  mutating func writeString(_ value: String) { writeBytes(Array(value.utf8)) }

  mutating func writeAddress(_ address: HostPort?) { writeString(address?.description ?? "") }
}

extension RaftDecoder {
  mutating func readString(_ what: String, bytesMax: Int) throws -> String {
    let start = offset
    let bytes = try readBytes(what)
    guard bytes.count <= bytesMax else {
      throw RaftDecodeError("\(what) of \(bytes.count) bytes exceeds \(bytesMax)", offset: start)
    }
    let text = String(decoding: bytes, as: UTF8.self)
    // Decoding repairs invalid sequences; a repaired string no longer matches its bytes.
    guard text.utf8.elementsEqual(bytes) else {
      throw RaftDecodeError("\(what) is not UTF-8", offset: start)
    }
    return text
  }

  /// An address written by `writeAddress`; the empty string stands for none.
  mutating func readAddress(_ what: String) throws -> HostPort? {
    let start = offset
    let text = try readString(what, bytesMax: 300)
    if text.isEmpty { return nil }
    do {
      return try HostPort(parsing: text)
    } catch {
      throw RaftDecodeError("\(what): \(error)", offset: start)
    }
  }
}

/// Addresses of the group's members, replicated through the log (membership-change
/// context) and snapshots (the envelope), so a node restarted from its database, or one
/// that joined later, can reach everybody.
struct AddressBook: Sendable, Hashable {
  private(set) var entries: [NodeID: PeerAddresses] = [:]

  /// Largest member count a decoder accepts; real groups have a handful.
  static let membersMax = 1_000

  init(_ entries: [NodeID: PeerAddresses] = [:]) {
    self.entries = entries
  }

  subscript(id: NodeID) -> PeerAddresses? {
    get { entries[id] }
    set { entries[id] = newValue }
  }

  /// Adds what `other` knows; `other` wins where both know a member.
  mutating func merge(_ other: AddressBook) {
    for (id, addresses) in other.entries { entries[id] = addresses }
  }

  func encoded() -> [UInt8] {
    var encoder = RaftEncoder()
    encoder.write(UInt32(entries.count))
    for id in entries.keys.sorted() {
      guard let addresses = entries[id] else { continue }
      encoder.write(id)
      encoder.writeAddress(addresses.raftAddress)
      encoder.writeAddress(addresses.apiAddress)
    }
    return encoder.bytes
  }

  init(decoding bytes: [UInt8]) throws {
    var decoder = RaftDecoder(bytes)
    let countOffset = decoder.offset
    let count = Int(try decoder.readUInt32("address count"))
    // Each member takes at least its id and two length prefixes.
    guard count <= Self.membersMax, count <= decoder.remainingByteCount / 16 else {
      throw RaftDecodeError("address count \(count) is impossible here", offset: countOffset)
    }
    for _ in 0..<count {
      let idOffset = decoder.offset
      let id = try decoder.readUInt64("member id")
      guard id != 0, entries[id] == nil else {
        throw RaftDecodeError("member id \(id) is zero or repeated", offset: idOffset)
      }
      let raftOffset = decoder.offset
      guard let raft = try decoder.readAddress("raft address") else {
        throw RaftDecodeError("member \(id) has no raft address", offset: raftOffset)
      }
      let api = try decoder.readAddress("api address")
      entries[id] = PeerAddresses(raftAddress: raft, apiAddress: api)
    }
    try decoder.expectEnd("address book")
  }
}

/// What the host stores as snapshot data: its address book around the state machine's
/// bytes, so both are restored together.
struct SnapshotEnvelope: Sendable, Hashable {
  var addressBook: AddressBook
  var stateMachineData: [UInt8]

  /// "SBRH" (StreamBus Raft host).
  static let magic: UInt32 = 0x5342_5248
  static let version: UInt8 = 1

  init(addressBook: AddressBook, stateMachineData: [UInt8]) {
    self.addressBook = addressBook
    self.stateMachineData = stateMachineData
  }

  func encoded() -> [UInt8] {
    var encoder = RaftEncoder()
    encoder.write(Self.magic)
    encoder.write(Self.version)
    encoder.writeBytes(addressBook.encoded())
    encoder.writeBytes(stateMachineData)
    return encoder.bytes
  }

  init(decoding bytes: [UInt8]) throws {
    var decoder = RaftDecoder(bytes)
    let magic = try decoder.readUInt32("snapshot envelope magic")
    guard magic == Self.magic else {
      throw RaftDecodeError("snapshot data is not a host snapshot envelope", offset: 0)
    }
    let version = try decoder.readUInt8("snapshot envelope version")
    guard version == Self.version else {
      throw RaftDecodeError("unsupported snapshot envelope version \(version)", offset: 4)
    }
    addressBook = try AddressBook(decoding: try decoder.readBytes("address book"))
    stateMachineData = try decoder.readBytes("state machine data")
    try decoder.expectEnd("snapshot envelope")
  }
}

/// One frame of peer traffic: a StreamBus request header (so the shared transport can
/// carry it; nothing answers it), then who sends it to whom in which cluster, the sender's
/// own addresses, and a batch of Raft messages.
///
/// ```
/// apiKey i16 = 1090, apiVersion i16 = 0, correlationId i32 (sender's frame counter)
/// clusterID string, from u64, to u64, sender raft address string, sender api address string
/// message count u32, then per message: u32 length + Message encoding (StreamBusRaft codec)
/// ```
struct PeerFrame: Sendable {
  var clusterID: String
  var from: NodeID
  var to: NodeID
  var senderAddresses: PeerAddresses
  var messages: [Message]

  static let apiKey: Int16 = 1090
  static let apiVersion: Int16 = 0
  static let clusterIDBytesMax = 255
  static let headerBytes = 8

  init(
    clusterID: String, from: NodeID, to: NodeID, senderAddresses: PeerAddresses,
    messages: [Message]
  ) {
    self.clusterID = clusterID
    self.from = from
    self.to = to
    self.senderAddresses = senderAddresses
    self.messages = messages
  }

  func encoded(correlationID: Int32) -> [UInt8] {
    var encoder = RaftEncoder()
    encoder.write(UInt32(UInt16(bitPattern: Self.apiKey)) << 16 | UInt32(UInt16(Self.apiVersion)))
    encoder.write(UInt32(bitPattern: correlationID))
    encoder.writeString(clusterID)
    encoder.write(from)
    encoder.write(to)
    encoder.writeAddress(senderAddresses.raftAddress)
    encoder.writeAddress(senderAddresses.apiAddress)
    encoder.write(UInt32(messages.count))
    for message in messages { encoder.writeBytes(message.encoded()) }
    return encoder.bytes
  }

  init(decoding bytes: [UInt8]) throws {
    var decoder = RaftDecoder(bytes)
    let keyAndVersion = try decoder.readUInt32("request header")
    let apiKey = Int16(bitPattern: UInt16(keyAndVersion >> 16))
    let apiVersion = Int16(bitPattern: UInt16(keyAndVersion & 0xFFFF))
    guard apiKey == Self.apiKey, apiVersion == Self.apiVersion else {
      throw RaftDecodeError(
        "not a Raft peer frame (api key \(apiKey) version \(apiVersion))", offset: 0)
    }
    _ = try decoder.readUInt32("correlation id")
    clusterID = try decoder.readString("cluster id", bytesMax: Self.clusterIDBytesMax)
    from = try decoder.readUInt64("from")
    to = try decoder.readUInt64("to")
    let raftOffset = decoder.offset
    guard let raft = try decoder.readAddress("sender raft address") else {
      throw RaftDecodeError("sender has no raft address", offset: raftOffset)
    }
    senderAddresses = PeerAddresses(
      raftAddress: raft, apiAddress: try decoder.readAddress("sender api address"))
    let countOffset = decoder.offset
    let count = Int(try decoder.readUInt32("message count"))
    // Every message takes at least its length prefix.
    guard count <= decoder.remainingByteCount / 4 else {
      throw RaftDecodeError("message count \(count) exceeds the frame", offset: countOffset)
    }
    messages = []
    messages.reserveCapacity(count)
    for _ in 0..<count {
      messages.append(try Message(decoding: try decoder.readBytes("message")))
    }
    try decoder.expectEnd("peer frame")
  }
}
