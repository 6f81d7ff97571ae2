# Generates peft/testdata/adamw_torch.json: torch.optim.AdamW on f(θ) = ½‖θ − c‖²
# (gradient θ − c), θ₀ and c fixed, 5 steps, lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.01.
import json, torch
torch.set_default_dtype(torch.float64)
theta0 = [[0.5, -1.25, 2.0], [0.0, 3.0, -0.75]]
c = [[1.0, 0.5, -0.5], [2.0, -1.0, 0.25]]
th = torch.tensor(theta0, requires_grad=True)
ct = torch.tensor(c)
opt = torch.optim.AdamW([th], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
traj = []
for _ in range(5):
    opt.zero_grad()
    loss = 0.5 * ((th - ct) ** 2).sum()
    loss.backward()
    opt.step()
    traj.append(th.detach().tolist())
print(json.dumps({"torch": torch.__version__, "theta0": theta0, "c": c, "lr": 0.1, "weight_decay": 0.01, "steps": traj}, indent=1))
