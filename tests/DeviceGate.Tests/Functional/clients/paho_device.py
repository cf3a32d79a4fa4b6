"""An MQTT device on Eclipse Paho (Debian's python3-paho-mqtt), for MqttTests.

Usage: paho_device.py <port> <device id> <token> <3.1.1|5>
Connects, subscribes to devices/<id>/messages with QoS 1, publishes a reported-state merge patch, prints
"subscribed", then prints each message's payload as one line and exits after the first one (or after 20 s).
"""
import sys
import threading
import paho.mqtt.client as mqtt

port, device, token, version = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client = mqtt.Client(client_id=device, protocol=protocol)
client.username_pw_set("device", token)


def on_connect(c, userdata, flags, rc, properties=None):
    if rc != 0:
        print("refused", rc, flush=True)
        c.disconnect()
        return
    c.subscribe(f"devices/{device}/messages", qos=1)


def on_subscribe(c, userdata, mid, granted, properties=None):
    c.publish(f"devices/{device}/state/reported", '{"fw":"1.4","battery":{"level":80}}', qos=1)
    print("subscribed", flush=True)


def on_message(c, userdata, message):
    print(message.payload.decode("utf-8"), flush=True)
    c.disconnect()


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
# Bounded: whatever happens, the device leaves after 20 s.
timer = threading.Timer(20, client.disconnect)
timer.daemon = True
timer.start()
client.connect("127.0.0.1", port, keepalive=30)
client.loop_forever()
