"""The synthesize task: generators trained against discriminators (or a VAE), by ``plan.model``.

* ``dcgan``: BCE adversarial losses on logits (the non-saturating generator loss), G and D stepped
  every iteration;
* ``cgan``: the same with one-hot classes in the latent and a projection discriminator;
* ``wgan-gp``: critic loss ``D(fake) - D(real) + gp_weight * (||grad D(x_hat)|| - 1)^2`` on random
  interpolates (Gulrajani et al. 2017); the generator steps every ``n_critic``-th iteration;
* ``vae``: reconstruction (MSE) + ``beta`` x KL per pixel, one optimiser;
* ``pix2pix``: LSGAN losses (MONAI ``PatchAdversarialLoss``) on (source, target) pairs through the
  PatchGAN + ``l1_weight`` x L1;
* ``cyclegan``: two generators (source -> target, target -> source) and two PatchGANs, trained
  unpaired (each batch's targets shuffled): LSGAN losses + ``cycle_weight`` x the two cycle L1 terms
  (Zhu et al. 2017). The generator optimiser holds both generators, the discriminator optimiser both
  discriminators.

The generator's optimiser is ``generator``, the discriminator's ``discriminator``: each its own Adam
(``plan.betas``), learning rate (``plan.lr``, ``plan.lr_d``), schedule and clipping (``plan.grad_clip_g``,
``plan.grad_clip_d``; None: ``train.grad_clip``). The engine takes each loss's gradients for its own
optimiser's parameters only, so the generator's loss never moves the discriminator and vice versa.

Validation: the Frechet distance between encoder features of validation pictures and of as many
generated ones (``val_fid``, lower is better; the encoder is the run's evaluation encoder, see
:mod:`medsight.tasks.synthesize.encoder`); the VAE's validation loss (``val_loss``); the translation's MAE
in the brain mask (``val_mae``; CycleGAN's checkpoint choice thus sees paired validation slices).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medsight.config import TrainConfig
from medsight.engine.contract import OptimizerSpec, StepContext, StepOutput
from medsight.tasks.synthesize.planning import SynthesisPlan

MONITORS = {"vae": ("val_loss", "min"), "pix2pix": ("val_mae", "min"), "cyclegan": ("val_mae", "min")}


class SynthesisTask:
    """The trainable half of the synthesize task (see medsight.engine.contract.TrainableTask)."""

    name = "synthesize"

    def __init__(
        self, plan: SynthesisPlan, train_config: TrainConfig | None = None, encoder: nn.Module | None = None
    ) -> None:
        self.plan = plan
        self.train_config = train_config or TrainConfig()
        self.monitor, self.monitor_mode = MONITORS.get(plan.model, ("val_fid", "min"))
        self.encoder = encoder
        self.generator = torch.Generator().manual_seed(self.train_config.seed)
        from monai.losses import PatchAdversarialLoss

        self.adversarial = PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True)

    # ------------------------------------------------------------------ model and optimisation
    def build_model(self) -> nn.Module:
        return build_synthesis_model(self.plan)

    def configure_optimizers(self, model: nn.Module) -> list[OptimizerSpec]:
        from medsight.engine.schedule import ProgressLR

        plan, config = self.plan, self.train_config
        betas = (float(plan.betas[0]), float(plan.betas[1]))
        if plan.model == "vae":
            opt = torch.optim.Adam(model.parameters(), lr=config.lr or plan.lr, betas=betas)
            return [OptimizerSpec(opt, [ProgressLR(opt, config.schedule)], "main", config.grad_clip)]
        specs = []
        generators = [model.generator, *([model.inverse] if hasattr(model, "inverse") else [])]
        for name, nets, lr, clip in (
            ("generator", generators, config.lr or plan.lr, plan.grad_clip_g),
            ("discriminator", [model.discriminator], plan.lr_d, plan.grad_clip_d),
        ):
            params = [p for net in nets for p in net.parameters()]
            opt = torch.optim.Adam(params, lr=lr, betas=betas)
            clip = clip if clip is not None else config.grad_clip
            specs.append(OptimizerSpec(opt, [ProgressLR(opt, config.schedule)], name, clip))
        return specs

    def training_step(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: StepContext
    ) -> StepOutput:
        plan = self.plan
        with step.autocast():
            if plan.model == "vae":
                loss, logs = self._vae_loss(model, batch["image"])
                return StepOutput({"main": loss}, {"loss": float(loss.detach()), **logs})
            if plan.model == "pix2pix":
                losses = self._pix2pix_losses(model, batch)
            elif plan.model == "cyclegan":
                losses = self._cycle_losses(model, batch)
            elif plan.model == "wgan-gp":
                losses = self._wgan_losses(model, batch, step.step)
            else:
                losses = self._gan_losses(model, batch)
        logs = {f"{k}_loss": float(v.detach()) for k, v in losses.items()}
        return StepOutput(losses, logs)

    def _vae_loss(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return vae_loss(model, x, self.plan.beta)

    def _fake(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        x = batch["image"]
        labels = batch.get("label") if self.plan.conditional else None
        z = model.latent(x.shape[0], self.plan.dim, labels, self.generator).to(x)
        return model.generator(z), labels

    def _gan_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real = batch["image"]
        fake, labels = self._fake(model, batch)
        d = model.discriminator
        d_loss = 0.5 * (bce(_disc(d, real, labels), True) + bce(_disc(d, fake.detach(), labels), False))
        g_loss = bce(_disc(d, fake, labels), True)  # the non-saturating generator loss
        return {"generator": g_loss, "discriminator": d_loss}

    def _wgan_losses(
        self, model: nn.Module, batch: dict[str, torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        real = batch["image"]
        fake, _ = self._fake(model, batch)
        d = model.discriminator
        d_loss = d(fake.detach()).mean() - d(real).mean()
        d_loss = d_loss + self.plan.gp_weight * gradient_penalty(d, real, fake.detach(), self.generator)
        losses = {"discriminator": d_loss}
        if step % self.plan.n_critic == self.plan.n_critic - 1:
            losses["generator"] = -d(fake).mean()
        return losses

    def _pix2pix_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        src, tgt = batch["image"], batch["target"]
        fake = model.generator(src)
        d, adv = model.discriminator, self.adversarial
        d_loss = 0.5 * (
            adv(d(torch.cat([src, tgt], 1)), target_is_real=True, for_discriminator=True)
            + adv(d(torch.cat([src, fake.detach()], 1)), target_is_real=False, for_discriminator=True)
        )
        g_adv = adv(d(torch.cat([src, fake], 1)), target_is_real=True, for_discriminator=False)
        g_loss = g_adv + self.plan.l1_weight * F.l1_loss(fake.float(), tgt)
        return {"generator": g_loss, "discriminator": d_loss}

    def _cycle_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        a = batch["image"]
        b = batch["target"][torch.randperm(len(a), generator=self.generator).to(a.device)]  # unpaired
        g, f, d_t, d_s, adv = model.generator, model.inverse, *model.discriminators, self.adversarial
        fake_b, fake_a = g(a), f(b)
        g_adv = adv(d_t(fake_b), target_is_real=True, for_discriminator=False) + adv(
            d_s(fake_a), target_is_real=True, for_discriminator=False
        )
        cycle = F.l1_loss(f(fake_b).float(), a) + F.l1_loss(g(fake_a).float(), b)
        d_loss = 0.0
        for d, real, fake in ((d_t, b, fake_b), (d_s, a, fake_a)):
            d_loss = d_loss + 0.5 * (
                adv(d(real), target_is_real=True, for_discriminator=True)
                + adv(d(fake.detach()), target_is_real=False, for_discriminator=True)
            )
        return {"generator": g_adv + self.plan.cycle_weight * cycle, "discriminator": d_loss}

    # ------------------------------------------------------------------ validation
    def validation_step(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        plan, x = self.plan, batch["image"]
        if plan.model == "vae":
            loss, _ = vae_loss(model, x, plan.beta, sample=False)
            return {"loss": loss.float().reshape(1), "n": torch.tensor([float(len(x))])}
        if plan.kind == "paired":
            err = (model.generator(x).float().clamp(0, 1) - batch["target"]).abs() * batch["mask"]
            return {"abs": err.sum().reshape(1), "n": batch["mask"].sum().reshape(1)}
        gen = torch.Generator().manual_seed(len(x))
        labels = batch.get("label") if plan.conditional else None
        fake = model.generator(model.latent(len(x), plan.dim, labels, gen).to(x))
        return {"real": self._features(x), "fake": self._features(fake.float())}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return x.flatten(1)
        return self.encoder.to(x.device)(x).float()

    def aggregate_validation(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        if self.plan.model == "vae":
            n = torch.cat([o["n"] for o in outputs])
            return {"val_loss": float((torch.cat([o["loss"] for o in outputs]) * n).sum() / n.sum())}
        if self.plan.kind == "paired":
            total = sum(float(o["abs"].sum()) for o in outputs)
            return {"val_mae": total / max(sum(float(o["n"].sum()) for o in outputs), 1.0)}
        from medsight.metrics.synthesis import frechet_distance

        real = torch.cat([o["real"] for o in outputs]).cpu().double().numpy()
        fake = torch.cat([o["fake"] for o in outputs]).cpu().double().numpy()
        return {"val_fid": frechet_distance(real, fake)}


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against all-real or all-fake targets (on logits:
    stable, and safe under autocast, unlike a sigmoid followed by ``BCELoss``)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def _disc(d: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return d(x, labels) if labels is not None else d(x)


def vae_loss(
    model: nn.Module, x: torch.Tensor, beta: float, sample: bool = True
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE reconstruction + ``beta`` x KL(q(z|x) || N(0, I)) per pixel (the beta-VAE objective)."""
    net = model.net
    mu, logvar = net.encode_forward(x)
    z = net.reparameterize(mu, logvar) if sample else mu
    recon = net.decode_forward(z)
    rec = F.mse_loss(recon.float(), x)
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp()) * mu.shape[1] / x[0].numel()
    return rec + beta * kl, {"recon": float(rec.detach()), "kl": float(kl.detach())}


def gradient_penalty(
    d: nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """``mean((||grad_x D(x_hat)||_2 - 1)^2)`` on random interpolates of real and fake (WGAN-GP)."""
    eps = torch.rand((real.shape[0], *[1] * (real.ndim - 1)), generator=generator).to(real)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def build_synthesis_model(plan: SynthesisPlan) -> nn.Module:
    """The plan's networks: a :class:`~medsight.models.synthesis.GAN` pair, or the VAE."""
    from medsight.models import build_model
    from medsight.models.synthesis import GAN

    size, c = plan.input_size, plan.image_channels
    if plan.model == "vae":
        return build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=c,
            out_channels=c,
            patch_size=size,
            **plan.network_kwargs,
        )
    assert plan.discriminator is not None
    if plan.model == "cyclegan":
        from medsight.models.synthesis import CycleGAN

        def unet() -> nn.Module:
            return build_model(
                plan.network,
                spatial_dims=plan.dim,
                in_channels=1,
                out_channels=1,
                patch_size=size,
                **plan.network_kwargs,
            )

        def patch() -> nn.Module:
            return build_model(
                plan.discriminator,
                spatial_dims=plan.dim,
                in_channels=1,
                out_channels=1,
                **plan.discriminator_kwargs,
            )

        return CycleGAN(unet(), unet(), patch(), patch())
    if plan.model == "pix2pix":
        unet = build_model(
            plan.network,
            spatial_dims=plan.dim,
            in_channels=1,
            out_channels=1,
            patch_size=size,
            **plan.network_kwargs,
        )
        disc = build_model(
            plan.discriminator,
            spatial_dims=plan.dim,
            in_channels=2,
            out_channels=1,
            **plan.discriminator_kwargs,
        )
        return GAN(unet, disc)  # a linear output: background 0 is where it starts (clipped at inference)
    k = len(plan.class_names) if plan.conditional else 0
    gen = build_model(
        plan.network,
        spatial_dims=plan.dim,
        in_channels=plan.latent_size + k,
        out_channels=c,
        patch_size=size,
        **plan.network_kwargs,
    )
    disc = build_model(
        plan.discriminator, spatial_dims=plan.dim, in_channels=c, out_channels=1, **plan.discriminator_kwargs
    )
    return GAN(gen, disc, plan.latent_size, k)
