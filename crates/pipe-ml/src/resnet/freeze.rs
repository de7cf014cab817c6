//! The named ResNets (`resnet18`, `resnet34`, `resnet50`) and which of their layers train:
//! `freeze: all | none | until LAYER`, with torchvision's module names (and, for resnet50, the
//! Keras names of the report's figures).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// torchvision depth of a named ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// BasicBlock net, 2-2-2-2 blocks.
    R18,
    /// BasicBlock net, 3-4-6-3 blocks.
    R34,
    /// Bottleneck net, 3-4-6-3 blocks (the Keras-layout network of TL1–TL3).
    R50,
}

impl Depth {
    /// The model name users write.
    pub fn name(self) -> &'static str {
        match self {
            Depth::R18 => "resnet18",
            Depth::R34 => "resnet34",
            Depth::R50 => "resnet50",
        }
    }

    /// Blocks of `layer1` … `layer4`.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Depth::R18 => [2, 2, 2, 2],
            Depth::R34 | Depth::R50 => [3, 4, 6, 3],
        }
    }

    /// The leaf layers of the backbone (convolutions and batch norms), torchvision's names in
    /// torchvision's module order (`conv1`, `bn1`, `layer1.0.conv1`, …, `layer4.0.downsample.0`).
    pub fn torchvision_leaves(self) -> Vec<String> {
        let mut out = vec!["conv1".to_owned(), "bn1".to_owned()];
        let convs: &[&str] = match self {
            Depth::R50 => &["1", "2", "3"],
            _ => &["1", "2"],
        };
        for (s, blocks) in self.blocks().into_iter().enumerate() {
            for b in 0..blocks {
                let block = format!("layer{}.{b}", s + 1);
                for k in convs {
                    out.push(format!("{block}.conv{k}"));
                    out.push(format!("{block}.bn{k}"));
                }
                // The first block of a stage changes the shape (resnet50's first changes the
                // width too), so it has the projection shortcut.
                if b == 0 && (s > 0 || self == Depth::R50) {
                    out.push(format!("{block}.downsample.0"));
                    out.push(format!("{block}.downsample.1"));
                }
            }
        }
        out
    }

    /// Every name `freeze: until` accepts, in network order: each leaf and each module above
    /// one (`layer4`, `layer4.1`, `layer4.0.downsample`), and for resnet50 the Keras layer
    /// names of the backbone (`res5b_branch2b`, `bn5b_branch2b`, `activation_46`, …).
    pub fn layer_names(self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for leaf in self.torchvision_leaves() {
            let parts: Vec<&str> = leaf.split('.').collect();
            for n in 1..=parts.len() {
                let name = parts[..n].join(".");
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        if self == Depth::R50 {
            names.extend(keras_backbone_names());
        }
        names
    }

    /// Human summary of [`Depth::layer_names`] for error messages.
    pub fn layer_names_hint(self) -> String {
        let [a, b, c, d] = self.blocks().map(|n| n - 1);
        let convs = match self {
            Depth::R50 => {
                "conv1, bn1, conv2, bn2, conv3, bn3, downsample, downsample.0, downsample.1"
            }
            _ => "conv1, bn1, conv2, bn2, downsample, downsample.0, downsample.1",
        };
        let keras = match self {
            Depth::R50 => "; or a Keras layer name such as res5b_branch2b",
            _ => "",
        };
        format!(
            "conv1, bn1, layer1 … layer4, a block layerN.M (layer1.0–{a}, layer2.0–{b}, \
             layer3.0–{c}, layer4.0–{d}), or a block's {convs}{keras}"
        )
    }
}

/// Keras layer names of resnet50's backbone (everything between the input and the head).
fn keras_backbone_names() -> Vec<String> {
    super::keras_layers(pipe_data::Shape::default())
        .into_iter()
        .map(|l| l.name)
        .filter(|n| n != "input_1" && !n.starts_with("dense_") && !n.starts_with("global_"))
        .collect()
}

/// Which layers of a named ResNet train. The head (global pool and the three dense layers)
/// always trains.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Freeze {
    /// The whole backbone is frozen: only the head trains.
    All,
    /// Everything trains.
    None,
    /// Every layer before the named one is frozen; it and everything after train.
    Until(String),
}

impl Freeze {
    /// The default when `freeze:` is absent: `all` over pretrained weights (Keras' transfer-
    /// learning guide: train a new head on a frozen base first), `none` over a random init (a
    /// frozen random backbone would learn nothing).
    pub fn default_for(pretrained: bool) -> Self {
        if pretrained {
            Freeze::All
        } else {
            Freeze::None
        }
    }

    /// The first trainable leaf of `depth`'s network: a torchvision leaf name for resnet18/34
    /// (`layer4.0.conv1`), a Keras layer name for resnet50 (`res5a_branch2a`); `dense_1` for
    /// `all`. An error names the unknown layer and the valid ones.
    pub fn first_trainable(&self, depth: Depth) -> Result<String, String> {
        let name = match self {
            Freeze::All => return Ok("dense_1".to_owned()),
            Freeze::None => return Ok("conv1".to_owned()),
            Freeze::Until(name) => name,
        };
        let leaf = depth
            .torchvision_leaves()
            .into_iter()
            .find(|l| l == name || l.starts_with(&format!("{name}.")));
        match (leaf, depth) {
            (Some(leaf), Depth::R50) => Ok(keras_of_torchvision(&leaf)),
            (Some(leaf), _) => Ok(leaf),
            (None, Depth::R50) if keras_backbone_names().contains(name) => Ok(name.clone()),
            (None, _) => Err(format!(
                "unknown layer `{name}` for {}: expected {}",
                depth.name(),
                depth.layer_names_hint()
            )),
        }
    }
}

/// Keras name of a resnet50 torchvision leaf (`layer4.1.conv2` → `res5b_branch2b`,
/// `layer1.0.downsample.1` → `bn2a_branch1`, `bn1` → `bn_conv1`).
fn keras_of_torchvision(leaf: &str) -> String {
    let parts: Vec<&str> = leaf.split('.').collect();
    match parts.as_slice() {
        ["bn1"] => "bn_conv1".to_owned(),
        [layer, block, rest @ ..] => {
            let stage: usize = layer[5..].parse::<usize>().unwrap_or(0) + 1;
            let block: usize = block.parse().unwrap_or(0);
            let tag = super::model::block_tag(stage, block);
            let (kind, branch) = match rest {
                ["downsample", "0"] => ("res", "1".to_owned()),
                ["downsample", "1"] => ("bn", "1".to_owned()),
                [l] => {
                    let (kind, k) = if let Some(k) = l.strip_prefix("conv") {
                        ("res", k)
                    } else {
                        ("bn", l.strip_prefix("bn").unwrap_or(l))
                    };
                    let letter = match k {
                        "1" => 'a',
                        "2" => 'b',
                        _ => 'c',
                    };
                    (kind, format!("2{letter}"))
                }
                _ => ("res", "2a".to_owned()),
            };
            format!("{kind}{tag}_branch{branch}")
        }
        _ => leaf.to_owned(),
    }
}

/// Index of each leaf in `leaves` (network order), for "is this layer before the cut".
pub(super) fn leaf_index(leaves: &[String]) -> BTreeMap<&str, usize> {
    leaves
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect()
}

impl std::fmt::Display for Freeze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Freeze::All => f.write_str("all"),
            Freeze::None => f.write_str("none"),
            Freeze::Until(layer) => write!(f, "until {layer}"),
        }
    }
}

impl std::str::FromStr for Freeze {
    type Err = String;

    /// `all`, `none` or `until LAYER` (any spacing; the canonical form has one space).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["all"] => Ok(Freeze::All),
            ["none"] => Ok(Freeze::None),
            ["until", layer] => Ok(Freeze::Until((*layer).to_owned())),
            _ => Err(format!(
                "`{s}`: expected `all`, `none` or `until LAYER` (e.g. `until layer4`)"
            )),
        }
    }
}

/// Serialised in its canonical form, which is what enters the stage's key.
impl Serialize for Freeze {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Freeze {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_parses_to_a_canonical_form() {
        let f: Freeze = "  until   layer4.1 ".parse().unwrap();
        assert_eq!(f, Freeze::Until("layer4.1".into()));
        assert_eq!(f.to_string(), "until layer4.1");
        assert_eq!(serde_json::to_string(&f).unwrap(), r#""until layer4.1""#);
        assert_eq!("all".parse(), Ok(Freeze::All));
        assert_eq!("none".parse(), Ok(Freeze::None));
        for bad in ["", "until", "some", "until a b", "All"] {
            assert!(bad.parse::<Freeze>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Freeze>(r#""until""#).is_err());
        assert_eq!(Freeze::default_for(true), Freeze::All);
        assert_eq!(Freeze::default_for(false), Freeze::None);
    }

    #[test]
    fn layer_names_resolve_to_the_first_leaf() {
        let until = |s: &str| Freeze::Until(s.into());
        let r18 = Depth::R18;
        assert_eq!(r18.torchvision_leaves().len(), 2 + 4 * 2 * 4 + 3 * 2);
        assert_eq!(
            until("layer4").first_trainable(r18).unwrap(),
            "layer4.0.conv1"
        );
        assert_eq!(
            until("layer4.1").first_trainable(r18).unwrap(),
            "layer4.1.conv1"
        );
        assert_eq!(
            until("layer3.0.downsample").first_trainable(r18).unwrap(),
            "layer3.0.downsample.0"
        );
        assert_eq!(until("bn1").first_trainable(r18).unwrap(), "bn1");
        assert_eq!(Freeze::All.first_trainable(r18).unwrap(), "dense_1");
        assert_eq!(Freeze::None.first_trainable(r18).unwrap(), "conv1");
        // resnet18 has no layer1 projection, two blocks per stage and no conv3.
        for bad in [
            "layer1.0.downsample",
            "layer4.2",
            "layer4.0.conv3",
            "res5b_branch2b",
        ] {
            let e = until(bad).first_trainable(r18).unwrap_err();
            assert!(e.contains(bad) && e.contains("layer4.0–1"), "{e}");
        }
        assert!(until("layer3.5.bn2").first_trainable(Depth::R34).is_ok());
        let r50 = Depth::R50;
        assert_eq!(
            until("layer4.1.conv2").first_trainable(r50).unwrap(),
            "res5b_branch2b"
        );
        assert_eq!(
            until("res5b_branch2b").first_trainable(r50).unwrap(),
            "res5b_branch2b"
        );
        assert_eq!(
            until("layer4").first_trainable(r50).unwrap(),
            "res5a_branch2a"
        );
        assert_eq!(
            until("layer1.0.downsample.1").first_trainable(r50).unwrap(),
            "bn2a_branch1"
        );
        assert_eq!(until("bn1").first_trainable(r50).unwrap(), "bn_conv1");
        assert_eq!(
            until("layer2.3.bn3").first_trainable(r50).unwrap(),
            "bn3d_branch2c"
        );
        assert!(until("dense_1").first_trainable(r50).is_err());
        let names = r50.layer_names();
        assert!(names.contains(&"layer4.0.downsample".to_owned()));
        assert!(names.contains(&"activation_49".to_owned()));
        // Every name listed resolves.
        for depth in [Depth::R18, Depth::R34, Depth::R50] {
            for name in depth.layer_names() {
                assert!(until(&name).first_trainable(depth).is_ok(), "{name}");
            }
        }
    }
}
