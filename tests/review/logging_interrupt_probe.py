import ctypes, logging, threading, io, time
h = logging.StreamHandler(io.StringIO()); log = logging.getLogger("x"); log.addHandler(h); log.setLevel(logging.INFO); log.propagate=False
class Boom(BaseException): pass
leaks = 0
for trial in range(300):
    ready = threading.Event()
    def body():
        ready.set()
        try:
            while True:
                log.info("working %s", 1)
        except Boom:
            pass
    t = threading.Thread(target=body); t.start(); ready.wait(); time.sleep(0.002)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(Boom))
    t.join(2)
    if t.is_alive(): print("body still running (interrupt swallowed)", trial); continue
    if not h.lock.acquire(timeout=0.01):
        leaks += 1
        print("handler lock leaked at trial", trial); break
    h.lock.release()
print("leaks", leaks)
