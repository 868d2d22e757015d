// The Kafka admin calls rdkafka lacks (reassignments, throttles, the KRaft
// quorum), run by smack on Kafka's own client jars; see admin.rs for its modes.
import java.nio.file.*;
import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;

public class SmackKafkaAdmin {
    static final String LEADER_RATE = "leader.replication.throttled.rate";
    static final String FOLLOWER_RATE = "follower.replication.throttled.rate";
    static final String LEADER_REPLICAS = "leader.replication.throttled.replicas";
    static final String FOLLOWER_REPLICAS = "follower.replication.throttled.replicas";

    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        if (a[1].startsWith("controllers=")) p.put("bootstrap.controllers", a[1].substring("controllers=".length()));
        else p.put("bootstrap.servers", a[1]);
        boolean quick = a[0].equals("join") || a[0].equals("voters");
        p.put("request.timeout.ms", quick ? "10000" : "60000");
        p.put("default.api.timeout.ms", quick ? "20000" : "120000");
        try (Admin admin = Admin.create(p)) {
            switch (a[0]) {
                case "reassign": reassign(admin, Path.of(a[2]), Long.parseLong(a[3])); break;
                case "voters": {
                    QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
                    String v = q.voters().stream().map(r -> String.valueOf(r.replicaId())).sorted().collect(Collectors.joining(","));
                    System.out.println("QUORUM voters=" + v + " leader=" + q.leaderId());
                    break;
                }
                case "remove-voter": removeVoter(admin, Integer.parseInt(a[2])); break;
                case "join": join(admin, Integer.parseInt(a[2]), a[3], a[4], Integer.parseInt(a[5]), Long.parseLong(a[6])); break;
                default: throw new IllegalArgumentException("unknown mode " + a[0]);
            }
        }
    }

    static void removeVoter(Admin admin, int id) throws Exception {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
        Optional<QuorumInfo.ReplicaState> v = q.voters().stream().filter(r -> r.replicaId() == id).findFirst();
        if (v.isEmpty()) {
            System.out.println("VOTER " + id + " is not a controller voter: nothing to remove");
            return;
        }
        admin.removeRaftVoter(id, v.get().replicaDirectoryId()).all().get();
        System.out.println("VOTER " + id + " removed from the controller quorum");
    }

    static void join(Admin admin, int id, String dir, String host, int port, long since) throws Exception {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
        Uuid want = Uuid.fromString(dir);
        Optional<QuorumInfo.ReplicaState> me = Optional.empty();
        for (QuorumInfo.ReplicaState v : q.voters()) {
            if (v.replicaId() != id) continue;
            if (v.replicaDirectoryId().equals(want)) {
                me = Optional.of(v);
                continue;
            }
            admin.removeRaftVoter(id, v.replicaDirectoryId()).all().get();
            System.out.println("JOIN removed voter " + id + " of directory " + v.replicaDirectoryId() + " (a lost disk)");
        }
        if (me.isEmpty()) {
            admin.addRaftVoter(id, want, Set.of(new RaftVoterEndpoint("CONTROLLER", host, port))).all().get();
            System.out.println("JOIN added " + id + " to the controller quorum (leader " + q.leaderId() + ")");
            q = admin.describeMetadataQuorum().quorumInfo().get();
            me = q.voters().stream().filter(v -> v.replicaId() == id && v.replicaDirectoryId().equals(want)).findFirst();
            if (me.isEmpty()) {
                System.out.println("WAITING " + id + " is not in the voter set yet");
                return;
            }
        }
        // The leader must have seen this node caught up since its launch: a
        // voter entry alone says nothing of a node that is restarting.
        long caught = q.leaderId() == id ? Long.MAX_VALUE : me.get().lastCaughtUpTimestamp().orElse(-1L);
        if (caught < since) {
            System.out.println("WAITING " + id + " is a voter but leader " + q.leaderId()
                + " has not seen it caught up since its launch (last at " + caught + ", launched at " + since + ")");
            return;
        }
        System.out.println("JOINED " + id + " is a controller voter, caught up with leader " + q.leaderId());
    }

    static void reassign(Admin admin, Path file, long throttle) throws Exception {
        Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new LinkedHashMap<>();
        Map<String, List<String>> leaders = new TreeMap<>(), followers = new TreeMap<>();
        Set<Integer> brokers = new TreeSet<>();
        for (String line : Files.readAllLines(file)) {
            String[] f = line.trim().split(" ");
            if (f.length != 4) continue;
            int part = Integer.parseInt(f[1]);
            List<Integer> target = ints(f[2]), current = ints(f[3]);
            moves.put(new TopicPartition(f[0], part), Optional.of(new NewPartitionReassignment(target)));
            for (int b : current) leaders.computeIfAbsent(f[0], k -> new ArrayList<>()).add(part + ":" + b);
            for (int b : target) if (!current.contains(b)) followers.computeIfAbsent(f[0], k -> new ArrayList<>()).add(part + ":" + b);
            brokers.addAll(target);
            brokers.addAll(current);
        }
        if (throttle > 0) {
            throttles(admin, leaders, followers, brokers, throttle, true);
            System.out.println("REASSIGN throttled to " + throttle + " bytes/s on brokers " + brokers);
        }
        try {
            admin.alterPartitionReassignments(moves).all().get();
            System.out.println("REASSIGN submitted " + moves.size() + " partition(s)");
            int last = -1;
            long lastAt = 0;
            while (true) {
                Map<TopicPartition, PartitionReassignment> left =
                    admin.listPartitionReassignments(moves.keySet()).reassignments().get();
                if (left.isEmpty()) break;
                long now = System.currentTimeMillis();
                if (left.size() != last || now - lastAt > 10000) {
                    String some = left.keySet().stream().limit(4).map(TopicPartition::toString).collect(Collectors.joining(", "));
                    System.out.println("REASSIGN " + (moves.size() - left.size()) + " of " + moves.size()
                        + " partition(s) moved; still moving " + left.size() + " (" + some + (left.size() > 4 ? ", ..." : "") + ")");
                    last = left.size();
                    lastAt = now;
                }
                Thread.sleep(1000);
            }
            System.out.println("REASSIGN done: " + moves.size() + " partition(s) moved");
            try {
                admin.electLeaders(ElectionType.PREFERRED, moves.keySet()).partitions().get();
                System.out.println("REASSIGN preferred leaders elected");
            } catch (Exception e) {
                System.out.println("REASSIGN preferred leader election: " + e.getMessage());
            }
        } finally {
            if (throttle > 0) {
                throttles(admin, leaders, followers, brokers, throttle, false);
                System.out.println("REASSIGN throttles removed");
            }
        }
    }

    static List<Integer> ints(String s) {
        List<Integer> out = new ArrayList<>();
        for (String r : s.split(",")) if (!r.isEmpty()) out.add(Integer.parseInt(r));
        return out;
    }

    static void throttles(Admin admin, Map<String, List<String>> leaders, Map<String, List<String>> followers,
                          Set<Integer> brokers, long rate, boolean set) throws Exception {
        Map<ConfigResource, Collection<AlterConfigOp>> ops = new HashMap<>();
        Set<String> topics = new TreeSet<>(leaders.keySet());
        topics.addAll(followers.keySet());
        for (String t : topics) {
            List<AlterConfigOp> l = new ArrayList<>();
            l.add(op(LEADER_REPLICAS, String.join(",", leaders.getOrDefault(t, List.of())), set));
            l.add(op(FOLLOWER_REPLICAS, String.join(",", followers.getOrDefault(t, List.of())), set));
            ops.put(new ConfigResource(ConfigResource.Type.TOPIC, t), l);
        }
        for (int b : brokers) {
            ops.put(new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(b)),
                List.of(op(LEADER_RATE, String.valueOf(rate), set), op(FOLLOWER_RATE, String.valueOf(rate), set)));
        }
        // A broker that is gone cannot be changed; the others still are.
        for (Map.Entry<ConfigResource, KafkaFuture<Void>> e : admin.incrementalAlterConfigs(ops).values().entrySet()) {
            try {
                e.getValue().get();
            } catch (Exception ex) {
                if (set && e.getKey().type() == ConfigResource.Type.TOPIC) throw ex;
                System.out.println("REASSIGN throttle on " + e.getKey() + ": " + ex.getMessage());
            }
        }
    }

    static AlterConfigOp op(String key, String value, boolean set) {
        return new AlterConfigOp(new ConfigEntry(key, set ? value : ""), set ? AlterConfigOp.OpType.SET : AlterConfigOp.OpType.DELETE);
    }
}
