import StreamBusRaft
import StreamBusTransport
import Testing

@testable import StreamBusRaftHost

@Suite struct HostCodecTests {
  private let addresses = PeerAddresses(
    raftAddress: HostPort(host: "127.0.0.1", port: 7001),
    apiAddress: HostPort(host: "::1", port: 9001))

  @Test func addressBookRoundTrips() throws {
    let book = AddressBook([
      1: addresses, 7: PeerAddresses(raftAddress: HostPort(host: "node7", port: 1)),
    ])
    #expect(try AddressBook(decoding: book.encoded()) == book)
    #expect(try AddressBook(decoding: AddressBook().encoded()) == AddressBook())
  }

  @Test func snapshotEnvelopeRoundTripsAndRejectsForeignData() throws {
    let envelope = SnapshotEnvelope(
      addressBook: AddressBook([3: addresses]), stateMachineData: [1, 2, 3])
    let bytes = envelope.encoded()
    #expect(try SnapshotEnvelope(decoding: bytes) == envelope)
    for length in 0..<bytes.count {
      #expect(throws: RaftDecodeError.self) {
        try SnapshotEnvelope(decoding: Array(bytes[0..<length]))
      }
    }
    #expect(throws: RaftDecodeError.self) { try SnapshotEnvelope(decoding: bytes + [0]) }
    #expect(throws: RaftDecodeError.self) { try SnapshotEnvelope(decoding: [1, 2, 3, 4, 1]) }
  }

  @Test func peerFrameRoundTrips() throws {
    var append = Message(kind: .appendEntries, from: 1, to: 2, term: 3)
    append.entries = [Entry(term: 3, index: 5, data: [9, 9])]
    let heartbeat = Message(kind: .heartbeat, from: 1, to: 2, term: 3)
    let frame = PeerFrame(
      clusterID: "c1", from: 1, to: 2, senderAddresses: addresses,
      messages: [append, heartbeat])
    let bytes = frame.encoded(correlationID: 42)
    let decoded = try PeerFrame(decoding: bytes)
    #expect(decoded.clusterID == "c1")
    #expect(decoded.from == 1 && decoded.to == 2)
    #expect(decoded.senderAddresses == addresses)
    #expect(decoded.messages == [append, heartbeat])
    for length in 0..<bytes.count {
      #expect(throws: RaftDecodeError.self) { try PeerFrame(decoding: Array(bytes[0..<length])) }
    }
  }
}
