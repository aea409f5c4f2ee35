"""HTTP routers; each module exposes ``router = APIRouter()``."""
