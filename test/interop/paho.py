#!/usr/bin/env python3
"""Run Eclipse Paho's interoperability client tests against a broker: the
MQTT 3.1.1 suite (client_test.py) or, with SUITE 5, the MQTT 5 one
(client_test5.py).

The suite (eclipse/paho.mqtt.testing, interoperability/) is not part of this
repository: fetch it yourself and pass its interoperability/ directory. Its
own command line clashes with unittest's, so this runner sets the module's
globals and runs its test case directly.

  python3 test/interop/paho.py PAHO_INTEROP_DIR HOST PORT NOSUBSCRIBE_FILTER [SUITE [TEST...]]

With TEST names (such as test_will_message), only those tests run; with the
single name `list`, the suite's test names are printed, one a line.
"""
import sys
import unittest

if len(sys.argv) < 5 or (len(sys.argv) >= 6 and sys.argv[5] not in ("3", "5")):
    print(__doc__)
    sys.exit(2)
interop_dir, host, port, nosub = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
v5 = len(sys.argv) >= 6 and sys.argv[5] == "5"
only = sys.argv[6:]
sys.path.insert(0, interop_dir)
sys.argv = sys.argv[:1]
if v5:
    import client_test5 as client_test  # noqa: E402
    # Its setUpClass resets the topics to its own defaults; keep the ones set here.
    client_test.setData = lambda: None
    # Its shared subscription test reads this global, set only by its own command line.
    client_test.topic_prefix = ""
else:
    import client_test  # noqa: E402

client_test.host = host
client_test.port = port
client_test.topics = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
client_test.wildtopics = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")
client_test.nosubscribe_topics = (nosub,)

names = unittest.defaultTestLoader.getTestCaseNames(client_test.Test)
if only == ["list"]:
    print("\n".join(names))
    sys.exit(0)
unknown = [name for name in only if name not in names]
if unknown:
    print(f"paho.py: no such test in the suite: {', '.join(unknown)}", file=sys.stderr)
    sys.exit(2)
suite = unittest.TestSuite(client_test.Test(name) for name in (only or names))
result = unittest.TextTestRunner(verbosity=2).run(suite)
print(f"paho interoperability ({'MQTT 5' if v5 else 'MQTT 3.1.1'}): {result.testsRun - len(result.failures) - len(result.errors)} of {result.testsRun} passed")
sys.exit(0 if result.wasSuccessful() else 1)
